/**
 * HeldCommand: `slipway run`'s child. Spawns `slipway-agent hold -- CMD ARGS...`, which
 * unshares a user+net namespace (mapping our uid/gid to 0), reports ready ("R" on fd 3) and waits
 * for "G" before exec'ing CMD. In between, slipway attaches a NamespaceAgent with `{pid}` and
 * configures the network.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { agentPath } from '../native.js';
import { AgentError } from './NamespaceAgent.js';

export interface HeldCommandOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run as this uid/gid (needs privileges). */
  user?: { uid: number; gid: number };
  /** Timeout for the "ready" report, default 10 000 ms. */
  timeoutMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class HeldCommand {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  private readonly child: ChildProcess;
  private readonly ctl: Duplex;
  private released = false;

  private constructor(child: ChildProcess, ctl: Duplex, exited: Promise<ExitStatus>) {
    this.child = child;
    this.ctl = ctl;
    this.pid = child.pid ?? -1;
    this.exited = exited;
  }

  static spawn(cmd: string, args: string[], opts: HeldCommandOptions = {}): Promise<HeldCommand> {
    return new Promise<HeldCommand>((resolve, reject) => {
      const child = spawn(agentPath, ['hold', '--ppid', String(process.pid), '--', cmd, ...args], {
        stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
        ...(opts.env ? { env: opts.env } : {}),
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
        ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
      });
      const ctl = child.stdio[3] as Duplex | null;
      const exited = new Promise<ExitStatus>((res) => child.once('exit', (code, signal) => res({ code, signal })));
      let settled = false;
      let text = '';
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ctl?.destroy();
        child.kill('SIGKILL');
        reject(e);
      };
      const timeoutMs = opts.timeoutMs ?? 10_000;
      const timer = setTimeout(() => fail(new AgentError(`slipway-agent hold did not get ready within ${timeoutMs} ms`, 'ETIMEDOUT')), timeoutMs);
      child.once('error', (e) => fail(new AgentError(`cannot start ${agentPath}: ${e.message}`, (e as NodeJS.ErrnoException).code ?? 'EIO')));
      if (!ctl) {
        fail(new AgentError('no control pipe to slipway-agent hold', 'EIO'));
        return;
      }
      ctl.on('error', () => {
        /* EPIPE/ECONNRESET when the child is gone: reported through 'exit' */
      });
      ctl.on('data', (chunk: Buffer) => {
        if (settled) return;
        text += chunk.toString('utf8');
        if (text.startsWith('R')) {
          settled = true;
          clearTimeout(timer);
          resolve(new HeldCommand(child, ctl, exited));
        } else if (text.startsWith('E') && text.includes('\n')) {
          fail(new AgentError(text.slice(1, text.indexOf('\n')), 'EIO'));
        }
      });
      void exited.then(({ code, signal }) => {
        if (settled) return;
        const why = text.startsWith('E') ? text.slice(1).trim() : `exited (${signal ? `signal ${signal}` : `code ${code}`}) before it was ready`;
        fail(new AgentError(`slipway-agent hold: ${why}`, 'ECHILD'));
      });
    });
  }

  /** Let the command start (the network is ready). */
  go(): void {
    if (this.released) return;
    this.released = true;
    this.ctl.end('G');
  }

  kill(sig: NodeJS.Signals | number = 'SIGTERM'): boolean {
    return this.child.kill(sig);
  }
}
