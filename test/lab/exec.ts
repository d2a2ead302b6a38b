// Small process helpers for the test lab. Everything here runs local commands only.
import { readFileSync } from 'node:fs';
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Run a command to completion, capturing output. Never throws on a non-zero exit. */
export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) {
      timer = setTimeout(() => {
        err.push(Buffer.from(`\n[lab] timeout after ${opts.timeoutMs} ms: ${argv.join(' ')}\n`));
        child.kill('SIGKILL');
      }, opts.timeoutMs);
    }
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`cannot run ${argv[0]}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin!.on('error', () => {});
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

/** Run and throw with the full output when the exit code is not 0. */
export async function runOk(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) {
    throw new Error(
      `command failed (code ${r.code}, signal ${r.signal}): ${argv.join(' ')}\n` +
        `stdout: ${r.stdout.trim()}\nstderr: ${r.stderr.trim()}`,
    );
  }
  return r;
}

/** Synchronous variant used in teardown and feature detection. */
export function runSync(argv: string[], timeoutMs = 10_000): RunResult {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
  return {
    code: r.status,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''),
  };
}

export function which(cmd: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], {
    encoding: 'utf8',
    env: { ...process.env, PATH: dirs.join(':') },
  });
  const p = r.stdout?.trim();
  return r.status === 0 && p ? p : undefined;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wait for a predicate, polling. Returns true if it became true before the deadline. */
export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > end) return false;
    await sleep(stepMs);
  }
}

/** Wait for a child to exit; resolves with its exit code/signal. */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Collect a readable stream's text into a growing buffer (bounded) for diagnostics. */
export function captureText(stream: NodeJS.ReadableStream | null | undefined, limit = 256 * 1024): { text: () => string } {
  let s = '';
  stream?.on('data', (b: Buffer) => {
    s += b.toString('utf8');
    if (s.length > limit) s = s.slice(s.length - limit);
  });
  return { text: () => s };
}

/** The stack's whole process tree (slipway: node + slipway-agent). */
export function processTree(pid: number): number[] {
  return [pid, ...descendants(pid)];
}

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on Linux). */
const CLK_TCK = 100;

/** utime+stime (seconds) in the text of a /proc/PID/stat or /proc/PID/task/TID/stat file. */
export function statCpuSeconds(stat: string): number {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields after "pid (comm) ": state(3) ... utime(14) stime(15) → indexes 11, 12 here.
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** utime+stime (seconds) of each pid, summed. Exited processes simply stop counting. */
export function cpuSeconds(pids: number[]): number {
  let seconds = 0;
  for (const p of pids) {
    try {
      seconds += statCpuSeconds(readFileSync(`/proc/${p}/stat`, 'utf8'));
    } catch {
      /* gone */
    }
  }
  return seconds;
}

/** Child pids (transitively) of a pid, read from /proc. */
export function descendants(pid: number): number[] {
  const r = runSync(['ps', '-e', '-o', 'pid=,ppid=']);
  const kids = new Map<number, number[]>();
  for (const line of r.stdout.split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number);
    if (!p || pp === undefined) continue;
    if (!kids.has(pp)) kids.set(pp, []);
    kids.get(pp)!.push(p);
  }
  const outp: number[] = [];
  const stack = [pid];
  while (stack.length) {
    const cur = stack.pop()!;
    for (const k of kids.get(cur) ?? []) {
      outp.push(k);
      stack.push(k);
    }
  }
  return outp;
}

export function procComm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export type { ChildProcess, SpawnOptions };
export { spawn };

/**
 * `dig +short` output split into the answer (the last line) and the tries that timed out: dig
 * prints ";; communications error to … timed out" on stdout for each try it had to repeat.
 * `other` holds any line that is neither (it should stay empty).
 */
export function digShort(stdout: string): { answer: string; timedOut: number; other: string[] } {
  const lines = stdout.trim().split('\n');
  const answer = lines.pop() ?? '';
  const timedOut = lines.filter((l) => l.startsWith(';; communications error')).length;
  return { answer, timedOut, other: lines.filter((l) => !l.startsWith(';; communications error')) };
}
