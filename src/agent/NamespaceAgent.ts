/**
 * NamespaceAgent: spawns `slipway-agent` (native/agent.c; its header documents the protocol),
 * which joins the target user+network namespace, creates (and optionally configures) the tap and
 * sends its fd back, then creates sockets inside the netns on request.
 *
 * Spawn from the main thread: PR_SET_PDEATHSIG fires when the spawning *thread* exits.
 *
 * The agent is started with posix_spawn (native/spawn.c) and its end seen through a pidfd: Node's
 * child_process.spawn forks the whole Node process, 4-5 ms of every launch on a 2-core VM. Only
 * `user` (a uid/gid switch, which posix_spawn cannot do) and kernels without pidfd_open (< 5.3)
 * still go through child_process.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { AgentChannel, agentPath, closeFd, FdWatch, reapPid, socketpair, spawnFds } from '../native.js';

export type AgentTarget = { pid: number } | { netnsPath: string; usernsPath?: string };

export interface AgentOptions {
  target: AgentTarget;
  /** default 'auto' (see agent.c). */
  joinUserns?: 'auto' | 'never' | 'always';
  ifname: string;
  mtu: number;
  mac?: string;
  vnetHdr?: boolean;
  /** Configure lo and the tap; without `address` (--ipv6-only) no IPv4 address or route is added. */
  configure?: { address?: string; prefixLength?: number; gateway?: string; ipv6?: 'slaac' | 'off' };
  /** Run the agent as this uid/gid (needs privileges; e.g. root serving a user's container). */
  user?: { uid: number; gid: number };
  /** Setup timeout, default 10 000 ms. */
  timeoutMs?: number;
  /** Where the agent's stderr goes (it only writes there when fd 3 is unusable). Default 'inherit'. */
  stderr?: 'inherit' | 'ignore';
}

export interface SocketRequest {
  family: 4 | 6;
  type: 'stream' | 'dgram';
  bind?: { address: string; port: number };
  connect?: { address: string; port: number };
}

/** Error reported by the agent (or about it): `message` is meant for the user, `code` is an errno name. */
export class AgentError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'AgentError';
    this.code = code;
  }
}

interface Reply {
  id?: number | null;
  ok: boolean;
  error?: string;
  code?: string;
  ifindex?: number;
  mac?: string;
  mtu?: number;
  ipv6note?: string;
  global?: string;
  tentative?: number;
}

type Exit = { code: number | null; signal: NodeJS.Signals | null };

/** The running agent process, however it was started. */
interface AgentProcess {
  readonly pid: number;
  /** Signal it, unless it has already exited. */
  kill(signal: NodeJS.Signals): void;
}

/** False once pidfd_open failed with ENOSYS (Linux < 5.3): agents then start through child_process. */
let pidfdWorks = true;

const signalNames = new Map<number, NodeJS.Signals>(Object.entries(constants.signals).map(([k, v]) => [v, k as NodeJS.Signals]));

/**
 * Start the agent with fd 3 = `channelFd` (stdin and stdout on /dev/null, stderr as asked).
 * `onExit` fires once when it ends; a failure to start throws (posix_spawn) or comes as onError
 * (child_process, which reports it asynchronously).
 */
function startAgentProcess(opts: AgentOptions, channelFd: number, onExit: (e: Exit) => void, onError: (e: Error) => void): AgentProcess {
  const args = agentArgs(opts);
  if (opts.user || !pidfdWorks) {
    const child = spawn(agentPath, args, {
      stdio: ['ignore', 'ignore', opts.stderr ?? 'inherit', channelFd],
      ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
    });
    child.once('exit', (code, signal) => onExit({ code, signal }));
    child.once('error', onError);
    return { pid: child.pid ?? -1, kill: (sig) => void child.kill(sig) };
  }
  let spawned: [number, number];
  try {
    spawned = spawnFds(agentPath, [agentPath, ...args], [-1, -1, opts.stderr === 'ignore' ? -1 : 2, channelFd]);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSYS') throw e;
    // A kernel before 5.3 has no pidfd_open (spawnFds killed and reaped the child): child_process.
    pidfdWorks = false;
    return startAgentProcess(opts, channelFd, onExit, onError);
  }
  const [pid, pidfd] = spawned;
  let exited = false;
  const watch = new FdWatch(pidfd, 'readable', () => {
    const status = reapPid(pid);
    if (status === null) return;
    exited = true;
    watch.close();
    closeFd(pidfd);
    onExit({ code: status[0] >= 0 ? status[0] : null, signal: status[1] > 0 ? (signalNames.get(status[1]) ?? null) : null });
  });
  return {
    pid,
    kill: (sig) => {
      // Until it is reaped (here, and nowhere else) the pid cannot name another process.
      if (!exited) process.kill(pid, sig);
    },
  };
}

interface Pending {
  resolve: (fd: number, reply: Reply) => void;
  reject: (e: Error) => void;
}

/** Build the agent argv (exported for tests and for logging the exact invocation). */
export function agentArgs(opts: AgentOptions, ppid: number = process.pid): string[] {
  const a: string[] = ['--ppid', String(ppid)];
  const t = opts.target;
  if ('pid' in t) {
    a.push('--pid', String(t.pid));
  } else {
    a.push('--netns-path', t.netnsPath);
    if (t.usernsPath !== undefined) a.push('--userns-path', t.usernsPath);
  }
  a.push('--join-userns', opts.joinUserns ?? 'auto');
  a.push('--ifname', opts.ifname, '--mtu', String(opts.mtu));
  if (opts.mac !== undefined) a.push('--mac', opts.mac);
  if (opts.vnetHdr) a.push('--vnet-hdr');
  if (opts.configure) {
    const c = opts.configure;
    a.push('--configure');
    if (c.address !== undefined && c.gateway !== undefined) {
      a.push('--address', `${c.address}/${c.prefixLength ?? 24}`, '--gateway', c.gateway);
    } else {
      a.push('--no-ipv4');
    }
    if (c.ipv6) a.push('--ipv6', c.ipv6);
  }
  return a;
}

/** Agent exit code when the {pid} target process exited. */
export const AGENT_EXIT_TARGET_GONE = 10;

export class NamespaceAgent {
  /** The tap fd (blocking mode as received; `new Tap()` makes it non-blocking). The caller owns it. */
  readonly tapFd: number;
  readonly pid: number;
  readonly ifindex: number;
  readonly mac: string;
  readonly mtu: number;
  /** Why IPv6 could not be set up as asked (a sysctl the agent could not write), if so. */
  readonly ipv6Note: string | undefined;
  /**
   * Called once when the agent exits without stop() having been called. `why` is a
   * human-readable summary: "target process 123 exited" (with a {pid} target the agent watches
   * the target and exits with code 10 when it goes), "signal SIGKILL", "exit code 1".
   */
  onExit: ((why: string, code: number | null, signal: NodeJS.Signals | null) => void) | null = null;
  /** Resolves when the agent process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private readonly child: AgentProcess;
  private readonly channel: AgentChannel;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stopped = false;
  private dead = false;
  private readonly targetPid: number | null;

  private constructor(
    child: AgentProcess,
    channel: AgentChannel,
    hello: Reply,
    targetPid: number | null,
    tapFd: number,
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  ) {
    this.child = child;
    this.channel = channel;
    this.pid = child.pid;
    this.tapFd = tapFd;
    this.targetPid = targetPid;
    this.ifindex = hello.ifindex ?? -1;
    this.mac = hello.mac ?? '';
    this.mtu = hello.mtu ?? 0;
    this.ipv6Note = hello.ipv6note;
    this.exited = exited;
    void exited.then(({ code, signal }) => this.died(code, signal));
  }

  static start(opts: AgentOptions): Promise<NamespaceAgent> {
    return new Promise<NamespaceAgent>((resolve, reject) => {
      const [parentEnd, childEnd] = socketpair();
      let settled = false;
      let exitInfo: Exit | null = null;
      let onExited!: (e: Exit) => void;
      const exited = new Promise<Exit>((res) => (onExited = res));
      let child: AgentProcess;
      try {
        child = startAgentProcess(
          opts,
          childEnd,
          (e) => {
            exitInfo = e;
            onExited(e);
          },
          (e) => fail(new AgentError(`cannot start ${agentPath}: ${e.message}`, (e as NodeJS.ErrnoException).code ?? 'EIO')),
        );
      } catch (e) {
        closeFd(parentEnd);
        closeFd(childEnd);
        const err = e as NodeJS.ErrnoException;
        reject(new AgentError(`cannot start ${agentPath}: ${err.message}`, err.code ?? 'EIO'));
        return;
      }
      closeFd(childEnd);

      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        channel.close();
        if (exitInfo === null) child.kill('SIGKILL');
        reject(err);
      };

      const timeoutMs = opts.timeoutMs ?? 10_000;
      const timer = setTimeout(
        () => fail(new AgentError(`namespace agent did not report within ${timeoutMs} ms`, 'ETIMEDOUT')),
        timeoutMs,
      );

      let agent: NamespaceAgent | null = null;
      const channel: AgentChannel = new AgentChannel(
        parentEnd,
        (msg, fds) => {
          if (agent) {
            agent.onMessage(msg, fds);
            return;
          }
          let hello: Reply;
          try {
            hello = JSON.parse(msg.toString('utf8')) as Reply;
          } catch {
            fds.forEach(closeFd);
            fail(new AgentError(`namespace agent sent garbage: ${JSON.stringify(msg.toString('latin1').slice(0, 80))}`, 'EPROTO'));
            return;
          }
          if (!hello.ok) {
            fds.forEach(closeFd);
            fail(new AgentError(hello.error ?? 'namespace agent failed', hello.code ?? 'EIO'));
            return;
          }
          if (fds.length !== 1) {
            fds.forEach(closeFd);
            fail(new AgentError('namespace agent reported success without a tap fd', 'EPROTO'));
            return;
          }
          if (settled) {
            fds.forEach(closeFd);
            return;
          }
          settled = true;
          clearTimeout(timer);
          agent = new NamespaceAgent(child, channel, hello, 'pid' in opts.target ? opts.target.pid : null, fds[0]!, exited);
          resolve(agent);
        },
        () => {
          if (agent) {
            agent.channelClosed();
            return;
          }
          // Closed before reporting: say how the agent ended.
          void exited.then(({ code, signal }) =>
            fail(
              new AgentError(
                `namespace agent exited before reporting (${signal ? `signal ${signal}` : `exit code ${code}`})`,
                'ECHILD',
              ),
            ),
          );
        },
      );
    });
  }

  /** Create a socket inside the netns (non-blocking, CLOEXEC). Resolves with the fd (caller owns it). */
  openSocket(req: SocketRequest): Promise<number> {
    if (this.dead || this.stopped) return Promise.reject(new AgentError('namespace agent is not running', 'ESRCH'));
    const id = this.nextId++;
    const msg: Record<string, string | number> = { id, op: 'socket', family: req.family, type: req.type };
    if (req.bind) {
      msg['bind'] = req.bind.address;
      msg['bindPort'] = req.bind.port;
    }
    if (req.connect) {
      msg['connect'] = req.connect.address;
      msg['port'] = req.connect.port;
    }
    return this.request(id, msg);
  }

  /** The tap's first global IPv6 address that is not tentative ('' when none yet). */
  globalIpv6Address(): Promise<{ address: string; tentative: boolean }> {
    if (this.dead || this.stopped) return Promise.reject(new AgentError('namespace agent is not running', 'ESRCH'));
    const id = this.nextId++;
    return this.requestReply(id, { id, op: 'addr6' }).then((r) => ({ address: r.global ?? '', tentative: r.tentative === 1 }));
  }

  /**
   * Wait (bounded) until the tap has a global IPv6 address, polling every `intervalMs`.
   * Resolves with the address, or '' when `timeoutMs` passed first.
   */
  async waitForGlobalIpv6(timeoutMs: number, intervalMs = 50): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { address } = await this.globalIpv6Address();
      if (address) return address;
      if (Date.now() >= deadline) return '';
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /** Liveness check: resolves when the agent answers. */
  ping(): Promise<void> {
    if (this.dead || this.stopped) return Promise.reject(new AgentError('namespace agent is not running', 'ESRCH'));
    const id = this.nextId++;
    return this.request(id, { id, op: 'ping' }).then(() => undefined);
  }

  /** Close the channel and SIGTERM the agent. Does not close tapFd. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.channel.close();
    this.rejectAll(new AgentError('namespace agent stopped', 'ECANCELED'));
    if (!this.dead) this.child.kill('SIGTERM');
  }

  private request(id: number, msg: object): Promise<number> {
    return this.send(id, msg, (fd) => fd);
  }

  private requestReply(id: number, msg: object): Promise<Reply> {
    return this.send(id, msg, (fd, reply) => {
      if (fd >= 0) closeFd(fd);
      return reply;
    });
  }

  private send<T>(id: number, msg: object, pick: (fd: number, reply: Reply) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: (fd, reply) => resolve(pick(fd, reply)), reject });
      let sent: boolean;
      try {
        sent = this.channel.send(Buffer.from(JSON.stringify(msg)));
      } catch (e) {
        this.pending.delete(id);
        reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      if (!sent) {
        this.pending.delete(id);
        reject(new AgentError('namespace agent channel is full', 'EAGAIN'));
      }
    });
  }

  private onMessage(msg: Buffer, fds: number[]): void {
    let r: Reply;
    try {
      r = JSON.parse(msg.toString('utf8')) as Reply;
    } catch {
      fds.forEach(closeFd);
      return;
    }
    const p = typeof r.id === 'number' ? this.pending.get(r.id) : undefined;
    if (!p) {
      fds.forEach(closeFd);
      return;
    }
    this.pending.delete(r.id as number);
    if (r.ok) {
      p.resolve(fds.length > 0 ? fds[0]! : -1, r);
      fds.slice(1).forEach(closeFd);
    } else {
      fds.forEach(closeFd);
      p.reject(new AgentError(r.error ?? 'namespace agent request failed', r.code ?? 'EIO'));
    }
  }

  private channelClosed(): void {
    this.rejectAll(new AgentError('namespace agent went away', 'ECONNRESET'));
  }

  private died(code: number | null, signal: NodeJS.Signals | null): void {
    this.dead = true;
    this.rejectAll(new AgentError('namespace agent exited', 'ECHILD'));
    if (!this.stopped) {
      this.channel.close();
      const why =
        code === AGENT_EXIT_TARGET_GONE && this.targetPid !== null
          ? `target process ${this.targetPid} exited`
          : signal
            ? `signal ${signal}`
            : `exit code ${code}`;
      this.onExit?.(why, code, signal);
    }
  }

  private rejectAll(err: AgentError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }
}
