/**
 * Integration tests for slipway-agent, NamespaceAgent and HeldCommand.
 *
 * Needs root to build the lab: a rootless "container" (`unshare --user --map-root-user --net`)
 * owned by uid 65534, and /dev/net/tun made 0666 as on desktop distributions. The agent itself
 * runs as uid 65534 (the rootless path); `nsenter` as root is used only to *check* the netns.
 * All traffic stays inside the private netns (10.0.2.0/24 on the tap, loopback).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentError, NamespaceAgent, agentArgs } from './NamespaceAgent.js';
import { HeldCommand } from './HeldCommand.js';
import { Tap, agentPath } from '../native.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = { uid: 65534, gid: 65534 };
const hasTools = ['unshare', 'setpriv', 'nsenter', 'ip'].every(
  (t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0,
);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function nsOf(pid: number | 'self', kind: string): string {
  return fs.readlinkSync(`/proc/${pid}/ns/${kind}`);
}

/** A rootless container netns: `unshare -r -n sleep` as uid 65534. */
async function makeContainer(): Promise<{ child: ChildProcess; pid: number }> {
  const child = spawn(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '--user', '--map-root-user', '--net', 'sleep', '300'],
    { stdio: 'ignore' },
  );
  const pid = child.pid!;
  for (let i = 0; i < 200; i++) {
    try {
      if (nsOf(pid, 'net') !== nsOf('self', 'net') && fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep') {
        return { child, pid };
      }
    } catch {
      /* not yet */
    }
    await sleep(10);
  }
  child.kill('SIGKILL');
  throw new Error('container did not start');
}

function inNetns(pid: number, args: string[]): string {
  const r = spawnSync('nsenter', ['-t', String(pid), '-n', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nsenter ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

describe('agentArgs', () => {
  it('builds the documented argv', () => {
    expect(
      agentArgs(
        {
          target: { netnsPath: '/run/netns/x', usernsPath: '/proc/1/ns/user' },
          joinUserns: 'always',
          ifname: 'tap0',
          mtu: 1500,
          mac: '02:00:00:00:00:01',
          vnetHdr: true,
          configure: { address: '10.0.2.100', prefixLength: 24, gateway: '10.0.2.2' },
        },
        42,
      ),
    ).toEqual([
      '--ppid', '42', '--netns-path', '/run/netns/x', '--userns-path', '/proc/1/ns/user', '--join-userns', 'always',
      '--ifname', 'tap0', '--mtu', '1500', '--mac', '02:00:00:00:00:01', '--vnet-hdr',
      '--configure', '--address', '10.0.2.100/24', '--gateway', '10.0.2.2',
    ]);
  });
});

describe.skipIf(!isRoot || !hasTools)('namespace agent (needs root to build a rootless lab: run as root)', () => {
  let ctr: { child: ChildProcess; pid: number };
  let agent: NamespaceAgent;
  let tap: Tap | null = null;
  const frames: Buffer[] = [];

  beforeAll(async () => {
    fs.chmodSync('/dev/net/tun', 0o666);
    ctr = await makeContainer();
    agent = await NamespaceAgent.start({
      target: { pid: ctr.pid },
      ifname: 'tap0',
      mtu: 65520,
      mac: '02:00:00:00:00:64',
      configure: { address: '10.0.2.100', prefixLength: 24, gateway: '10.0.2.2' },
      user: NOBODY,
    });
  });

  afterAll(() => {
    tap?.close();
    agent?.stop();
    ctr?.child.kill('SIGKILL');
  });

  it('creates and configures the tap inside the netns (as uid 65534)', () => {
    expect(agent.pid).toBeGreaterThan(0);
    expect(fs.statSync(`/proc/${agent.pid}`).uid).toBe(65534);
    expect(agent.mtu).toBe(65520);
    expect(agent.mac).toBe('02:00:00:00:00:64');
    const links = JSON.parse(inNetns(ctr.pid, ['ip', '-j', 'addr', 'show'])) as {
      ifname: string; ifindex: number; mtu: number; address: string; flags: string[];
      addr_info: { family: string; local: string; prefixlen: number }[];
    }[];
    const t = links.find((l) => l.ifname === 'tap0')!;
    expect(t.ifindex).toBe(agent.ifindex);
    expect(t.mtu).toBe(65520);
    expect(t.address).toBe('02:00:00:00:00:64');
    expect(t.flags).toContain('UP');
    expect(t.addr_info.filter((a) => a.family === 'inet')).toMatchObject([{ local: '10.0.2.100', prefixlen: 24 }]);
    const lo = links.find((l) => l.ifname === 'lo')!;
    expect(lo.flags).toContain('UP');
    const routes = JSON.parse(inNetns(ctr.pid, ['ip', '-j', 'route', 'show', 'default'])) as { gateway: string; dev: string }[];
    expect(routes).toMatchObject([{ gateway: '10.0.2.2', dev: 'tap0' }]);
  });

  it('answers ping requests', async () => {
    await agent.ping();
  });

  it('frames from the netns reach Tap, and frames written to the tap reach the netns', async () => {
    const got = new Promise<void>((res) => {
      tap = new Tap(agent.tapFd, 65536 + 64, 16, (n) => {
        for (let i = 0; i < n; i++) frames.push(Buffer.from(tap!.ring.subarray(i * (65536 + 64), i * (65536 + 64) + tap!.lengths[i]!)));
        res();
      });
    });
    // A UDP socket made inside the netns by the agent: sending makes the kernel ARP for the gateway.
    const fd = await agent.openSocket({ family: 4, type: 'dgram', connect: { address: '10.0.2.2', port: 9 } });
    fs.writeSync(fd, Buffer.from('ping-through-tap'));
    await got;
    let arp: Buffer | undefined;
    for (let i = 0; i < 100 && !arp; i++) {
      arp = frames.find((f) => f.readUInt16BE(12) === 0x0806);
      if (!arp) await sleep(10);
    }
    expect(arp).toBeDefined();
    expect(arp!.subarray(0, 6).toString('hex')).toBe('ffffffffffff');
    expect(arp!.readUInt16BE(20)).toBe(1); // request
    expect([...arp!.subarray(28, 32)].join('.')).toBe('10.0.2.100');
    expect([...arp!.subarray(38, 42)].join('.')).toBe('10.0.2.2');

    // Answer the ARP request with writev (header + body): the kernel then sends the queued datagram.
    const gwMac = Buffer.from('020000000002', 'hex');
    const guestMac = arp!.subarray(6, 12);
    const eth = Buffer.concat([guestMac, gwMac, Buffer.from([0x08, 0x06])]);
    const body = Buffer.alloc(28);
    body.writeUInt16BE(1, 0);
    body.writeUInt16BE(0x0800, 2);
    body[4] = 6;
    body[5] = 4;
    body.writeUInt16BE(2, 6);
    gwMac.copy(body, 8);
    Buffer.from([10, 0, 2, 2]).copy(body, 14);
    guestMac.copy(body, 18);
    Buffer.from([10, 0, 2, 100]).copy(body, 24);
    expect(tap!.writev([eth, body])).toBe(true);
    let udp: Buffer | undefined;
    for (let i = 0; i < 200 && !udp; i++) {
      udp = frames.find((f) => f.readUInt16BE(12) === 0x0800 && f[23] === 17 && f.readUInt16BE(36) === 9);
      if (!udp) await sleep(10);
    }
    expect(udp).toBeDefined();
    expect(udp!.subarray(0, 6).equals(gwMac)).toBe(true);
    expect(udp!.subarray(42).toString()).toBe('ping-through-tap');
    expect(tap!.stats().txFrames).toBe(1);
    fs.closeSync(fd);
  });

  it('openSocket connects to a TCP listener inside the netns', async () => {
    const server = spawn(
      'nsenter',
      ['-t', String(ctr.pid), '-n', process.execPath, '-e',
        "require('net').createServer(s=>s.end('hi from netns')).listen(5555,'127.0.0.1',()=>console.log('L'))"],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((res) => server.stdout!.once('data', () => res()));
      const fd = await agent.openSocket({ family: 4, type: 'stream', connect: { address: '127.0.0.1', port: 5555 } });
      const sock = new net.Socket({ fd, readable: true, writable: true });
      const text = await new Promise<string>((res, rej) => {
        let s = '';
        sock.on('data', (d) => (s += d.toString()));
        sock.on('end', () => res(s));
        sock.on('error', rej);
      });
      sock.destroy();
      expect(text).toBe('hi from netns');

      // bind inside the netns: the tap's own address exists only there
      const bfd = await agent.openSocket({ family: 4, type: 'stream', bind: { address: '10.0.2.100', port: 0 } });
      fs.closeSync(bfd);
      await expect(agent.openSocket({ family: 4, type: 'stream', bind: { address: '198.51.100.1', port: 80 } }))
        .rejects.toMatchObject({ code: 'EADDRNOTAVAIL' });
      await expect(agent.openSocket({ family: 6, type: 'dgram', connect: { address: 'not-an-ip', port: 1 } }))
        .rejects.toMatchObject({ code: 'EINVAL' });
    } finally {
      server.kill('SIGKILL');
    }
  });

  it('reports a taken tap name', async () => {
    const e = await NamespaceAgent.start({ target: { pid: ctr.pid }, ifname: 'tap0', mtu: 1500, user: NOBODY }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AgentError);
    expect(e).toMatchObject({ code: 'EBUSY', message: 'tap name tap0 is already in use in the target namespace' });
  });

  it('reports a missing PID and a missing netns path', async () => {
    const max = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    let pid = max - 1;
    while (fs.existsSync(`/proc/${pid}`)) pid--;
    await expect(NamespaceAgent.start({ target: { pid }, ifname: 'tap0', mtu: 1500, user: NOBODY })).rejects.toMatchObject({
      code: 'ENOENT',
      message: `cannot open /proc/${pid}/ns/net: no such process (is PID ${pid} running?)`,
    });
    await expect(
      NamespaceAgent.start({ target: { netnsPath: '/nonexistent/netns' }, ifname: 'tap0', mtu: 1500, user: NOBODY }),
    ).rejects.toMatchObject({ code: 'ENOENT', message: 'netns path /nonexistent/netns does not exist' });
  });

  it('reports another user\'s namespace as permission denied', async () => {
    // uid 65533 does not own the container's userns
    await expect(
      NamespaceAgent.start({ target: { pid: ctr.pid }, ifname: 'tap1', mtu: 1500, user: { uid: 65533, gid: 65533 } }),
    ).rejects.toMatchObject({ code: expect.stringMatching(/^E(ACCES|PERM)$/) as unknown as string });
  });

  it('joins via --netns-path: the owning userns with joinUserns always, a clear error without it', async () => {
    const netnsPath = `/proc/${ctr.pid}/ns/net`;
    const a4 = await NamespaceAgent.start({ target: { netnsPath }, joinUserns: 'always', ifname: 'tapn', mtu: 9000, user: NOBODY });
    expect(a4.mtu).toBe(9000);
    const link = JSON.parse(inNetns(ctr.pid, ['ip', '-j', 'link', 'show', 'tapn'])) as { flags: string[] }[];
    expect(link[0]!.flags).not.toContain('UP'); // no --configure: created, left down (like slirp4netns)
    a4.stop();
    fs.closeSync(a4.tapFd);
    await expect(NamespaceAgent.start({ target: { netnsPath }, ifname: 'tapm', mtu: 1500, user: NOBODY })).rejects.toMatchObject({
      code: 'EPERM',
      message: expect.stringContaining('--join-userns always') as unknown as string,
    });
  });

  it('survives garbage requests', async () => {
    const { AgentChannel, closeFd, socketpair } = await import('../native.js');
    const [a, b] = socketpair();
    const child = spawn(agentPath, agentArgs({ target: { pid: ctr.pid }, ifname: 'tapg', mtu: 1500 }), {
      stdio: ['ignore', 'ignore', 'inherit', b],
      uid: 65534,
      gid: 65534,
    });
    closeFd(b);
    const replies: string[] = [];
    const ch = new AgentChannel(a, (m, fds) => {
      replies.push(m.toString());
      fds.forEach(closeFd);
    }, () => {});
    const garbage = ['', 'x', '{', '{"id":', '{"id":1,"op":"nope"}', '{"op":"ping"}', '{"id":"s","op":"ping"}',
      '{"id":2,"op":"socket","family":5,"type":"stream"}', '{"id":3,"op":"socket","family":4,"type":"raw"}',
      '{"id":4,"op":"socket","family":4,"type":"dgram","connect":"' + 'a'.repeat(300) + '","port":1}',
      '\u0000\u00ff{}}}', '{"id":99999999999999999999,"op":"ping"}', '{"id":5,"op":"ping"}'];
    for (const g of garbage) ch.send(Buffer.from(g));
    for (let i = 0; i < 200 && replies.length < garbage.length + 1; i++) await sleep(10);
    expect(replies.length).toBe(garbage.length + 1); // hello + one reply each
    expect(JSON.parse(replies[0]!)).toMatchObject({ ok: true, ifindex: expect.any(Number) as number });
    expect(JSON.parse(replies.at(-1)!)).toEqual({ id: 5, ok: true });
    for (const r of replies.slice(1, -1)) expect(JSON.parse(r)).toMatchObject({ ok: false, code: 'EINVAL' });
    expect(alive(child.pid!)).toBe(true);
    ch.close();
    const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    expect(code).toBe(0); // EOF on fd 3 -> exit 0
  });

  it('reports unexpected agent death through onExit', async () => {
    const a2 = await NamespaceAgent.start({ target: { pid: ctr.pid }, ifname: 'tap2', mtu: 1500, user: NOBODY });
    fs.closeSync(a2.tapFd);
    const why = await new Promise<string>((res) => {
      a2.onExit = (w) => res(w);
      process.kill(a2.pid, 'SIGKILL');
    });
    expect(why).toBe('signal SIGKILL');
    await expect(a2.openSocket({ family: 4, type: 'dgram' })).rejects.toBeInstanceOf(AgentError);
  });

  it('exits (code 10, onExit "target process N exited") when the {pid} target exits', async () => {
    const c2 = await makeContainer();
    const a3 = await NamespaceAgent.start({ target: { pid: c2.pid }, ifname: 'tap0', mtu: 1500, user: NOBODY });
    fs.closeSync(a3.tapFd);
    const got = new Promise<{ why: string; code: number | null }>((res) => {
      a3.onExit = (why, code) => res({ why, code });
    });
    c2.child.kill('SIGKILL');
    expect(await got).toEqual({ why: `target process ${c2.pid} exited`, code: 10 });
  });

  it('dies when its parent is SIGKILLed', async () => {
    const native = fileURLToPath(new URL('../native.ts', import.meta.url));
    const script = path.join(os.tmpdir(), `slipway-parent-${process.pid}.mts`);
    fs.writeFileSync(
      script,
      `import { spawn } from 'node:child_process';
       import { socketpair, closeFd, agentPath } from ${JSON.stringify(native)};
       const [a, b] = socketpair();
       const c = spawn(agentPath, ['--ppid', String(process.pid), '--pid', '${ctr.pid}', '--ifname', 'tap3', '--mtu', '1500'],
         { stdio: ['ignore', 'ignore', 'inherit', b], uid: 65534, gid: 65534 });
       closeFd(b);
       console.log(c.pid);
       setInterval(() => {}, 1000);`,
    );
    const parent = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const agentPid = await new Promise<number>((res) => parent.stdout!.once('data', (d: Buffer) => res(Number(d.toString().trim()))));
    // wait until the agent has joined the netns (the tap exists), then kill the parent
    for (let i = 0; i < 200; i++) {
      if (inNetns(ctr.pid, ['ip', '-o', 'link']).includes('tap3')) break;
      await sleep(10);
    }
    expect(alive(agentPid)).toBe(true);
    parent.kill('SIGKILL');
    let gone = false;
    for (let i = 0; i < 300 && !gone; i++) {
      gone = !alive(agentPid);
      if (!gone) await sleep(10);
    }
    fs.rmSync(script, { force: true });
    expect(gone).toBe(true);
  });
});

describe.skipIf(!isRoot || !hasTools)('HeldCommand (slipway run; needs root to run as uid 65534)', () => {
  let dir: string;
  beforeAll(() => {
    fs.chmodSync('/dev/net/tun', 0o666);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-held-'));
    fs.chmodSync(dir, 0o777);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs the command in a fresh user+net namespace after go() and reports its exit status', async () => {
    const out = path.join(dir, 'links');
    const held = await HeldCommand.spawn('sh', ['-c', `ip -o link > ${out}; id -u >> ${out}; exit 7`], { user: NOBODY });
    expect(nsOf(held.pid, 'net')).not.toBe(nsOf('self', 'net'));
    expect(fs.existsSync(out)).toBe(false); // held until go()
    held.go();
    expect(await held.exited).toEqual({ code: 7, signal: null });
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^1: lo:/);
    expect(lines[1]).toBe('0');
  });

  it('gets a configured network from a NamespaceAgent attached with {pid}', async () => {
    const out = path.join(dir, 'addr');
    const held = await HeldCommand.spawn('sh', ['-c', `ip -o -4 addr show > ${out}; ip route >> ${out}`], { user: NOBODY });
    const agent = await NamespaceAgent.start({
      target: { pid: held.pid },
      joinUserns: 'always',
      ifname: 'tap0',
      mtu: 1500,
      configure: { address: '10.0.2.100', prefixLength: 24, gateway: '10.0.2.2' },
      user: NOBODY,
    });
    held.go();
    expect(await held.exited).toEqual({ code: 0, signal: null });
    agent.stop();
    fs.closeSync(agent.tapFd);
    const text = fs.readFileSync(out, 'utf8');
    expect(text).toMatch(/tap0\s+inet 10\.0\.2\.100\/24/);
    expect(text).toMatch(/default via 10\.0\.2\.2 dev tap0/);
  });

  it('reports a missing command as exit 127, and a kill as a signal', async () => {
    const held = await HeldCommand.spawn('/nonexistent/slipway-cmd', [], { user: NOBODY });
    held.go();
    expect(await held.exited).toEqual({ code: 127, signal: null });
    const held2 = await HeldCommand.spawn('sleep', ['30'], { user: NOBODY });
    held2.go();
    await sleep(50);
    held2.kill('SIGTERM');
    expect(await held2.exited).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('exits 1 when slipway closes the control channel without go', async () => {
    const held = await HeldCommand.spawn('true', [], { user: NOBODY });
    (held as unknown as { ctl: { destroy(): void } }).ctl.destroy();
    expect(await held.exited).toEqual({ code: 1, signal: null });
  });
});
