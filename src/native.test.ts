import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AgentChannel,
  busyPollStats,
  closeFd,
  csum,
  FdWatch,
  isPingPermissionError,
  lowMemory,
  PingSocket,
  POLL_READABLE,
  reapPid,
  setBusyPoll,
  setCloexec,
  socketpair,
  spawnFds,
  Tap,
  type NativeError,
} from './native.js';

/** Reference: ones'-complement sum of big-endian 16-bit words, folded, not inverted. */
function refCsum(buf: Uint8Array, off: number, len: number, initial: number): number {
  let sum = initial;
  let i = 0;
  for (; i + 1 < len; i += 2) sum += (buf[off + i]! << 8) | buf[off + i + 1]!;
  if (i < len) sum += buf[off + i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

const isRoot = process.getuid?.() === 0;

describe('csum', () => {
  it('matches the RFC 1071 example and a known IPv4 header', () => {
    // RFC 1071 4.1: 00 01 f2 03 f4 f5 f6 f7 -> sum ddf2
    expect(csum(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0, 8, 0)).toBe(0xddf2);
    const hdr = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
    expect(~csum(hdr, 0, hdr.length, 0) & 0xffff).toBe(0xb861);
  });

  it('matches the reference on random buffers, odd lengths, offsets and initial values', () => {
    const r = rng(42);
    for (let n = 0; n < 2000; n++) {
      const size = n < 300 ? n : r() % 70000;
      const buf = new Uint8Array(size + 16);
      for (let i = 0; i < buf.length; i++) buf[i] = n % 7 === 0 ? 0xff : r() & 0xff;
      const off = r() % 16;
      const len = size === 0 ? 0 : r() % (size + 1);
      const initial = n % 3 === 0 ? 0 : r() & 0xffff;
      expect(csum(buf, off, len, initial), `size ${size} off ${off} len ${len} init ${initial}`).toBe(refCsum(buf, off, len, initial));
    }
  });

  it('works on subarray views and Buffers, and checks bounds', () => {
    const b = Buffer.alloc(100, 0xab);
    const view = b.subarray(3, 50);
    expect(csum(view, 1, 20, 7)).toBe(refCsum(b, 4, 20, 7));
    expect(() => csum(b, 90, 20, 0)).toThrow(RangeError);
    expect(() => csum('x' as unknown as Uint8Array, 0, 1, 0)).toThrow(TypeError);
  });
});

describe('lowMemory', () => {
  it('shrinks the young generation that a burst of allocation grew', () => {
    const youngMB = (): number => (v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0) / 1048576;
    let keep: object[] = [];
    for (let i = 0; i < 2_000_000; i++) {
      keep.push({ i, s: `x${i}` });
      if (keep.length > 5000) keep = [];
    }
    const grown = youngMB();
    expect(grown).toBeGreaterThanOrEqual(8); // the burst did grow it (else this test proves nothing)
    keep = [];
    lowMemory();
    expect(youngMB()).toBeLessThanOrEqual(grown / 4);
  });
});

describe('idleTimeMetricsOff', () => {
  // libuv versions whose private loop layout the addon knows (native/misc.c); others are left alone.
  const [maj, min] = process.versions.uv!.split('.').map(Number) as [number, number];
  const known = maj === 1 && min >= 39 && min < 52;
  it('turns off the loop idle time that Node counts (once), and eventLoopUtilization stops counting idle', () => {
    const native = fileURLToPath(new URL('./native.ts', import.meta.url));
    const script = `
      import { performance } from 'node:perf_hooks';
      import { idleTimeMetricsOff } from ${JSON.stringify(native)};
      const nap = () => new Promise((r) => setTimeout(r, 60));
      const idle = async () => { const a = performance.eventLoopUtilization(); await nap(); return performance.eventLoopUtilization(a).idle; };
      const before = await idle();
      const first = idleTimeMetricsOff();
      const second = idleTimeMetricsOff();
      const after = await idle();
      console.log(JSON.stringify({ before, first, second, after }));
    `;
    const dir = fs.mkdtempSync('/tmp/slipway-elu-');
    fs.writeFileSync(`${dir}/t.mts`, script);
    const r = spawnSync(process.execPath, ['--import', 'tsx', `${dir}/t.mts`], { encoding: 'utf8', timeout: 20000 });
    fs.rmSync(dir, { recursive: true });
    expect(r.stderr).toBe('');
    const o = JSON.parse(r.stdout.trim()) as { before: number; first: boolean; second: boolean; after: number };
    expect(o.before).toBeGreaterThan(30); // Node counts idle time to begin with (ms of a 60 ms sleep)
    expect(o.second).toBe(false);
    if (known) {
      expect(o.first).toBe(true);
      expect(o.after).toBe(0);
    } else {
      expect(o.first).toBe(false);
      expect(o.after).toBeGreaterThan(30);
    }
  });
});

describe('fd helpers', () => {
  it('socketpair gives CLOEXEC SEQPACKET ends; setCloexec toggles; closeFd closes', () => {
    const [a, b] = socketpair();
    const flags = (fd: number): string => fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/flags:\s+(\d+)/)![1]!;
    expect(parseInt(flags(a), 8) & 0o2000000).not.toBe(0);
    setCloexec(a, false);
    expect(parseInt(flags(a), 8) & 0o2000000).toBe(0);
    setCloexec(a, true);
    closeFd(a);
    closeFd(b);
    try {
      closeFd(b);
      expect.unreachable();
    } catch (e) {
      expect((e as NativeError).code).toBe('EBADF');
      expect((e as NativeError).message).toMatch(/^close: Bad file descriptor/);
    }
  });
});

describe('AgentChannel', () => {
  it('passes messages and fds, and reports close', async () => {
    const [a, b] = socketpair();
    const got: { msg: string; fds: number[] }[] = [];
    let closed = false;
    const done = new Promise<void>((res) => {
      const chB = new AgentChannel(
        b,
        (msg, fds) => got.push({ msg: msg.toString(), fds }),
        () => {
          closed = true;
          chB.close();
          res();
        },
      );
    });
    const chA = new AgentChannel(a, () => {}, () => {});
    expect(chA.send(Buffer.from('{"x":1}'))).toBe(true);
    chA.send(new TextEncoder().encode('two'));
    await new Promise((r) => setTimeout(r, 20));
    chA.close();
    await done;
    expect(closed).toBe(true);
    expect(got.map((g) => g.msg)).toEqual(['{"x":1}', 'two']);
    expect(got[0]!.fds).toEqual([]);
  });
});

describe('Tap (over a SEQPACKET socketpair standing in for a tap fd)', () => {
  it('reads batches into the ring, refills when full, writes and writev', async () => {
    const [dev, peer] = socketpair();
    const seen: string[] = [];
    const batches: number[] = [];
    const tap = new Tap(dev, 256, 4, (n) => {
      batches.push(n);
      for (let i = 0; i < n; i++) seen.push(tap.ring.toString('latin1', i * 256, i * 256 + tap.lengths[i]!));
    });
    expect(tap.ring.length).toBe(1024);
    expect(tap.lengths.length).toBe(4);
    const peerCh = new AgentChannel(peer, (m) => seen.push('peer:' + m.toString()), () => {});
    for (let i = 0; i < 10; i++) peerCh.send(Buffer.from(`frame${i}`));
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.filter((s) => s.startsWith('frame'))).toEqual(Array.from({ length: 10 }, (_, i) => `frame${i}`));
    expect(batches).toEqual([4, 4, 2]); // one wake-up, ring refilled after each callback
    expect(tap.write(Buffer.from('out1'))).toBe(true);
    expect(tap.writev([Buffer.from('ou'), new Uint8Array([0x74, 0x32]), Buffer.alloc(0)])).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.filter((s) => s.startsWith('peer:'))).toEqual(['peer:out1', 'peer:out2']);
    const st = tap.stats();
    expect(st).toMatchObject({ rxFrames: 10, rxBytes: 60, txFrames: 2, txBytes: 8, txDropped: 0, rxErrors: 0 });

    tap.pause();
    peerCh.send(Buffer.from('while-paused'));
    await new Promise((r) => setTimeout(r, 30));
    expect(seen).not.toContain('while-paused');
    tap.resume();
    await new Promise((r) => setTimeout(r, 30));
    expect(seen).toContain('while-paused');

    tap.close();
    tap.close();
    expect(tap.fd).toBe(-1);
    expect(() => tap.write(Buffer.from('x'))).toThrow(/EBADF|closed/);
    peerCh.close();
  });

  it('exceptions from onFrames go to uncaughtException and microtasks run', async () => {
    const [dev, peer] = socketpair();
    let micro = false;
    const tap = new Tap(dev, 128, 2, () => {
      queueMicrotask(() => (micro = true));
      throw new Error('boom from onFrames');
    });
    const caught = new Promise<Error>((res) => {
      const listeners = process.listeners('uncaughtException');
      process.removeAllListeners('uncaughtException');
      process.once('uncaughtException', (e) => {
        for (const l of listeners) process.on('uncaughtException', l);
        res(e);
      });
    });
    const peerCh = new AgentChannel(peer, () => {}, () => {});
    peerCh.send(Buffer.from('x'));
    const e = await caught;
    expect(e.message).toBe('boom from onFrames');
    await new Promise((r) => setTimeout(r, 10));
    expect(micro).toBe(true);
    tap.close();
    peerCh.close();
  });

  it('sendOffload writes what writevOffload writes (vnet header first), and checks its arguments', async () => {
    const [dev, peer] = socketpair();
    const tap = new Tap(dev, 128, 2, () => {}, 12);
    const got: Buffer[] = [];
    const peerCh = new AgentChannel(peer, (m) => got.push(Buffer.from(m)), () => {});
    const hdr = Buffer.alloc(128);
    for (let i = 0; i < 54; i++) hdr[i] = i + 1;
    const payload = Buffer.from('..hello, guest..');
    expect(tap.writevOffload([hdr.subarray(0, 54), payload.subarray(2, 14)], 1, 1460, 34, 16, 54)).toBe(true);
    expect(tap.sendOffload(hdr, 54, payload, 2, 12, 1, 1460, 34, 16)).toBe(true);
    expect(tap.writevOffload([hdr.subarray(0, 54)], 0, 0, 34, 16, 54)).toBe(true);
    expect(tap.sendOffload(hdr, 54, null, 0, 0, 0, 0, 34, 16)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(got.length).toBe(4);
    expect(got[1]!.toString('hex')).toBe(got[0]!.toString('hex'));
    expect(got[3]!.toString('hex')).toBe(got[2]!.toString('hex'));
    // virtio_net_hdr: NEEDS_CSUM, GSO type, hdr_len, gso_size, csum_start, csum_offset (LE), num_buffers.
    expect([...got[1]!.subarray(0, 12)]).toEqual([1, 1, 54, 0, 1460 & 0xff, 1460 >> 8, 34, 0, 16, 0, 0, 0]);
    expect(got[1]!.subarray(12 + 54).toString()).toBe('hello, guest');
    expect(tap.stats()).toMatchObject({ txFrames: 4, txBytes: 2 * (54 + 12) + 2 * 54 });
    expect(() => tap.sendOffload(hdr, 129, null, 0, 0, 0, 0, 34, 16)).toThrow(/hdrLen is past the end of hdr/);
    expect(() => tap.sendOffload(hdr, 54, payload, 10, 7, 0, 0, 34, 16)).toThrow(/off \+ len is past the end of payload/);
    expect(() => tap.sendOffload(hdr, 54, payload, -1, 2, 0, 0, 34, 16)).toThrow(RangeError);
    expect(() => tap.sendOffload(hdr, 54, payload, 0, 2, 256, 0, 34, 16)).toThrow(RangeError);
    expect(() => tap.sendOffload(hdr, 54, 'x' as unknown as Uint8Array, 0, 1, 0, 0, 34, 16)).toThrow(/payload must be a Uint8Array/);
    expect(tap.stats().txFrames).toBe(4);
    tap.close();
    peerCh.close();
    const [plainDev, plainPeer] = socketpair();
    const plain = new Tap(plainDev, 128, 2, () => {});
    expect(() => plain.sendOffload(hdr, 54, null, 0, 0, 0, 0, 34, 16)).toThrow(/needs a tap opened with a vnet header/);
    plain.close();
    closeFd(plainPeer);
  });

  it('write returns false and counts when the queue is full', () => {
    const [dev, peer] = socketpair();
    const tap = new Tap(dev, 128, 2, () => {});
    let dropped = 0;
    for (let i = 0; i < 100000 && dropped === 0; i++) if (!tap.write(Buffer.alloc(1000))) dropped++;
    expect(dropped).toBe(1);
    expect(tap.stats().txDropped).toBe(1);
    tap.close();
    closeFd(peer);
  });
});

/** Spawn with spawnFds and wait (through the pidfd) for [code, signal]. */
function spawnAndWait(argv: string[], fds: number[]): Promise<[number, number]> {
  const [pid, pidfd] = spawnFds(argv[0]!, argv, fds);
  return new Promise((resolve) => {
    const w = new FdWatch(pidfd, 'readable', () => {
      const r = reapPid(pid);
      if (r === null) return;
      w.close();
      closeFd(pidfd);
      resolve(r);
    });
  });
}

describe('spawnFds / reapPid', () => {
  it('maps the given fds onto 0..n-1, /dev/null for -1, and closes the rest', async () => {
    const dir = fs.mkdtempSync('/tmp/slw-spawn-');
    const outFd = fs.openSync(`${dir}/out`, 'w');
    const extra = fs.openSync('/dev/null', 'r');
    setCloexec(extra, false); // inheritable: the child still must not get it
    const script = `ls /proc/self/fd | sort -n | tr '\\n' ' ' >&3; read x; echo "stdin:[$x]" >&3; echo out; exit 7`;
    const [code, sig] = await spawnAndWait(['/bin/sh', '-c', script], [-1, -1, 2, outFd]);
    fs.closeSync(outFd);
    fs.closeSync(extra);
    expect([code, sig]).toEqual([7, 0]);
    const out = fs.readFileSync(`${dir}/out`, 'utf8');
    fs.rmSync(dir, { recursive: true });
    // fds 0-3 and the one ls opens for /proc/self/fd: nothing else of ours leaked.
    expect(out.split(' ').filter((t) => /^\d+$/.test(t)).map(Number).filter((n) => n !== 4 && n !== 5)).toEqual([0, 1, 2, 3]);
    expect(out).toContain('stdin:[]');
  });

  it('resets signal dispositions (Node ignores SIGPIPE) and reports the signal', async () => {
    expect(await spawnAndWait(['/bin/sh', '-c', 'kill -PIPE $$; sleep 5'], [-1, -1, 2])).toEqual([-1, 13]);
  });

  it('passes the environment and throws ENOENT for a missing program', async () => {
    process.env.SLW_SPAWN_TEST = 'yes';
    try {
      expect(await spawnAndWait(['/bin/sh', '-c', 'test "$SLW_SPAWN_TEST" = yes'], [-1, -1, 2])).toEqual([0, 0]);
    } finally {
      delete process.env.SLW_SPAWN_TEST;
    }
    expect(() => spawnFds('/nonexistent/slipway-x', ['x'], [])).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => spawnFds('/bin/true', [], [])).toThrow(RangeError);
  });
});

describe('FdWatch', () => {
  it("'any' reports hangup of a pipe's write end", async () => {
    const [a, b] = socketpair();
    const ev = await new Promise<number>((res) => {
      const w = new FdWatch(a, 'any', (events) => {
        w.close();
        res(events);
      });
      closeFd(b);
    });
    expect(ev & POLL_READABLE).toBeTruthy();
    closeFd(a);
  });
});

describe('PingSocket', () => {
  const range = fs.readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8').trim().split(/\s+/).map(Number);
  const gid = process.getgid?.() ?? 0;
  const allowed = gid >= range[0]! && gid <= range[1]!;

  it.skipIf(allowed)('throws EACCES/EPERM when ping_group_range forbids it', () => {
    try {
      new PingSocket(4, () => {});
      expect.unreachable();
    } catch (e) {
      expect(isPingPermissionError(e)).toBe(true);
      expect((e as Error).message).toMatch(/^socket\(AF_INET, SOCK_DGRAM, IPPROTO_ICMP\): /);
    }
  });

  it.skipIf(!isRoot)('echoes on loopback inside a private netns (root: unshare -n)', () => {
    const native = fileURLToPath(new URL('./native.ts', import.meta.url));
    const script = `
      import { PingSocket } from ${JSON.stringify(native)};
      const s = new PingSocket(4, (data, from) => {
        console.log(JSON.stringify({ type: data[0], payload: data.subarray(8).toString(), from }));
        s.close();
      });
      const m = Buffer.alloc(8 + 5); m[0] = 8; m.write('hello', 8);
      s.send('127.0.0.1', m);
    `;
    fs.writeFileSync('/tmp/slipway-ping-test.mts', script);
    const r = spawnSync(
      'unshare',
      ['-n', 'sh', '-c', 'ip link set lo up && sysctl -qw net.ipv4.ping_group_range="0 2147483647" && exec node --import tsx /tmp/slipway-ping-test.mts'],
      { encoding: 'utf8', timeout: 20000 },
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.trim())).toEqual({ type: 0, payload: 'hello', from: '127.0.0.1' });
  });
});

describe('setBusyPoll / busyPollStats', () => {
  it('polls for the window after an event, sleeps once it passes, halves it for late events, grows it back, and is off at 0', async () => {
    const [a, b] = socketpair();
    const buf = Buffer.alloc(16);
    let done = (): void => {};
    const w = new FdWatch(a, 'readable', () => {
      fs.readSync(a, buf);
      done();
    });
    const event = (): Promise<void> => new Promise<void>((res) => {
      done = res;
      fs.writeSync(b, 'x');
    });
    try {
      setBusyPoll(10_000);
      const s0 = busyPollStats();
      expect(s0).toMatchObject({ maxUs: 10_000, windowUs: 10_000, polling: false });
      await event();
      await new Promise((r) => setImmediate(r));
      expect(busyPollStats().polling).toBe(true); // right after the event's callback
      await sleep(60);
      expect(busyPollStats().polling).toBe(false); // 10 ms passed with nothing to do: asleep
      expect(busyPollStats().polls).toBeGreaterThan(s0.polls);
      const windows: number[] = [];
      for (let i = 0; i < 3; i++) {
        await event(); // 60 ms after the last: beyond the maximum
        windows.push(busyPollStats().windowUs);
        await sleep(60);
      }
      expect(windows).toEqual([5000, 2500, 0]); // halved; below a quarter of the maximum, 0
      expect(busyPollStats().shrinks - s0.shrinks).toBe(3);
      await event();
      await event(); // within the maximum of the last: the window grows back from a quarter
      expect(busyPollStats().windowUs).toBeGreaterThanOrEqual(2500);
      expect(busyPollStats().grows).toBeGreaterThan(s0.grows);
      setBusyPoll(0);
      await event();
      expect(busyPollStats()).toMatchObject({ maxUs: 0, windowUs: 0, polling: false });
    } finally {
      setBusyPoll(0);
      w.close();
      closeFd(a);
      closeFd(b);
    }
  });
  it('does not poll after a bulk event (a read of 16 KiB or more), and stops a poll already running', async () => {
    const [dev, peer] = socketpair();
    let done = (): void => {};
    const tap = new Tap(dev, 32 * 1024, 2, () => done());
    const peerCh = new AgentChannel(peer, () => {}, () => {});
    const frame = (bytes: number): Promise<void> => new Promise<void>((res) => {
      done = res;
      peerCh.send(Buffer.alloc(bytes, 1));
    });
    const afterCallback = (): Promise<void> => new Promise((r) => setImmediate(r));
    try {
      setBusyPoll(10_000);
      const s0 = busyPollStats();
      await frame(100);
      await afterCallback();
      expect(busyPollStats().polling).toBe(true); // a small frame: polling
      await frame(20 * 1024);
      await afterCallback();
      expect(busyPollStats().polling).toBe(false); // a bulk frame: the poll stopped, asleep
      expect(busyPollStats().bulk - s0.bulk).toBe(1);
      await frame(16 * 1024 - 1);
      await afterCallback();
      expect(busyPollStats().polling).toBe(true); // just under the threshold: polling again
      expect(busyPollStats().bulk - s0.bulk).toBe(1);
    } finally {
      setBusyPoll(0);
      tap.close();
      peerCh.close();
    }
  });
  it('names bad input', () => {
    expect(() => setBusyPoll(-1)).toThrow(/maxUs/);
    expect(() => setBusyPoll(2_000_000)).toThrow(/maxUs/);
    expect(() => setBusyPoll('fast' as unknown as number)).toThrow(/maxUs/);
  });
});
