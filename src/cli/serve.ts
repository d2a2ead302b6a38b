/**
 * The life of one slipway instance: start the namespace agent, take the tap, run the stack,
 * signal readiness, and shut down cleanly on SIGTERM/SIGINT, on --exit-fd, when the agent dies,
 * or (slipway run) when the command exits.
 */

import fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { NamespaceAgent, type AgentOptions } from '../agent/NamespaceAgent.js';
import { HeldCommand } from '../agent/HeldCommand.js';
import { Tap, FdWatch, PingSocket, csum, idleTimeMetricsOff, lowMemory, setBusyPoll, busyPollStats, mallocTrim, type Tap as TapHandle, type FdWatch as FdWatchHandle, type TapStats } from '../native.js';
import { setPartialSum } from '../wire/checksum.js';
import { VNET_HDR_LEN } from '../wire/vnet.js';
import { formatIpv4 } from '../wire/ipv4.js';
import { formatMac } from '../wire/ethernet.js';
import { Stack } from '../stack.js';
import type { StackConfig } from '../config.js';
import { DnsForwarder, readResolvConf, warmRandom } from '../services/dns.js';
import type { RunPlan } from './options.js';
import { PortForwarder } from '../forward/PortForwarder.js';
import { GatewayOpener } from '../forward/tapOpen.js';
import { ApiServer, checkSocketPath } from '../control/ApiServer.js';
import { forwarderBackend } from '../control/backend.js';
import type { FrameWriter } from '../link/sink.js';
import type { FrameReceiver } from '../link/frames.js';
import { PcapWriter } from '../link/pcap.js';
import { FaultInjector } from '../link/faults.js';
import { hostPort } from '../ip/endpoint.js';

/** The agent's exit code when the target PID it watches has exited. */
const TARGET_EXITED = 10;

/**
 * Frames per tap batch: enough to drain a burst in one wake-up, bounded in memory (~1 MiB: 16
 * super-frames with offload). A/B 2026-12-01, 3 rounds of iperf3 each way: 1, 2 and 4 MiB rings
 * move the same Gbit/s at the same CPU per GB; the 4 MiB ring cost 3 MB more RSS.
 */
function ringSlots(slotSize: number): number {
  return Math.max(16, Math.min(1024, Math.floor((1 << 20) / slotSize)));
}


/** How long --configure waits for the guest's SLAAC address before signalling ready anyway. */
const SLAAC_WAIT_MS = 5000;
/**
 * How often to ask the agent for it meanwhile. Our RA goes out as the stack starts and the guest
 * (accept_dad=0) has the address within a few ms, so a short poll keeps it off launch → ready.
 */
const SLAAC_POLL_MS = 5;

/** DNS search domains from the resolver file (last "search"/"domain" line), for RA and DHCPv6. */
function searchDomains(plan: RunPlan): string[] {
  if (plan.stack.dnsUpstreams) return [];
  try {
    let found: string[] = [];
    for (const line of fs.readFileSync(plan.resolvConf, 'utf8').split('\n')) {
      const m = /^\s*(search|domain)\s+(.+)$/.exec(line);
      if (m) found = m[2].trim().split(/\s+/).filter((d) => /^[A-Za-z0-9.-]{1,253}$/.test(d)).slice(0, 6);
    }
    return found;
  } catch {
    return [];
  }
}

/**
 * After a burst of traffic, hand the memory it used back to the kernel, so RSS after load is what
 * is in use: drop the buffers kept for reuse under load (`release`), V8's low-memory notification
 * (full GCs: closed flows' buffers are garbage V8 would otherwise keep until external memory next
 * grows by tens of MB; and the young generation shrunk back from the size the burst grew it to),
 * then malloc_trim (glibc keeps freed C heap mapped otherwise). Checked every 2 s: it happens once
 * traffic has gone quiet (< 1 MiB of activity in the last interval) after at least 16 MiB, so the
 * pause (21–26 ms measured after 2 × 3 s of iperf3) does not land in the middle of a transfer.
 * Activity is bytes across the tap plus 1 KiB per frame: short connections move few bytes (about 8
 * frames of ~58 bytes each, 460 bytes per connection, counted in a CRR run) but leave garbage per
 * frame. Counted on bytes alone, a 4 s burst of ~28,000 connections never reached 16 MiB and RSS
 * stayed at 74 MB; counted with frames, it is back to 60 MB a few seconds after the burst
 * (bench/ab-rr.ts, AB_SETTLE_MS=6000, 2026-12-02).
 */
export function idleTrimmer(activity: () => number, release: () => void, log: Logger): NodeJS.Timeout {
  let last = activity();
  let sinceTrim = 0;
  const timer = setInterval(() => {
    const now = activity();
    const delta = now - last;
    last = now;
    sinceTrim += delta;
    if (delta < 1 << 20 && sinceTrim >= 16 << 20) {
      sinceTrim = 0;
      const t0 = performance.now();
      release();
      lowMemory();
      mallocTrim();
      if (log.isLevelEnabled('debug')) log.debug({ ms: Math.round((performance.now() - t0) * 10) / 10, memory: memoryReport() }, 'traffic quiet: memory returned');
    }
  }, 2000);
  timer.unref();
  return timer;
}

/** The idle trimmer's measure of activity across the tap: bytes, plus 1 KiB per frame. */
export function tapActivity(t: Pick<TapStats, 'rxBytes' | 'txBytes' | 'rxFrames' | 'txFrames'>): number {
  return t.rxBytes + t.txBytes + (t.rxFrames + t.txFrames) * 1024;
}

/** Resolve the DNS upstreams: the flags, else the resolver file's nameservers. */
function dnsUpstreams(plan: RunPlan, log: Logger): { address: string; port: number }[] {
  if (plan.stack.dnsUpstreams) return plan.stack.dnsUpstreams;
  try {
    const found = readResolvConf(plan.resolvConf);
    if (found.length === 0) log.warn({ path: plan.resolvConf }, 'no nameserver lines found: DNS queries to the virtual DNS address will fail (use --dns-upstream)');
    return found;
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'cannot read DNS upstreams: DNS queries will fail (use --dns-upstream)');
    return [];
  }
}

/** Start serving a namespace; throws with a user-actionable message when it cannot. */
export async function serve(plan: RunPlan, log: Logger): Promise<number> {
  if (plan.apiSocket !== undefined) checkSocketPath(plan.apiSocket);
  setPartialSum(csum);
  // Node counts the loop's idle time for performance.eventLoopUtilization(), which slipway never
  // reads; with it on, every sleep of the loop costs one more (zero-timeout) epoll_pwait.
  if (idleTimeMetricsOff()) log.debug('loop idle-time metrics turned off');
  else log.debug({ uv: process.versions.uv }, 'loop idle-time metrics left on (a libuv whose layout the addon does not know)');
  // Poll briefly after each event instead of sleeping at once (native/busypoll.c; --busy-poll).
  setBusyPoll(plan.busyPollUs);
  // Frame-path middleware (src/link/frames.ts); both are null, and nothing is wrapped, by default.
  const faults = FaultInjector.fromEnv(process.env.SLIPWAY_FAULTS);
  if (faults) {
    log.warn({ faults: faults.spec }, 'SLIPWAY_FAULTS is set: frames to and from the container are dropped, duplicated, reordered and corrupted ON PURPOSE (a test knob: unset it for normal use)');
  }
  const pcap = plan.pcap !== undefined ? PcapWriter.open(plan.pcap, { onError: (m) => log.error(m) }) : null;
  const upstreams = dnsUpstreams(plan, log);
  const config: StackConfig = { ...plan.stack, dnsUpstreams: upstreams };
  const v4 = config.ipv4;

  let held: HeldCommand | null = null;
  let target: AgentOptions['target'];
  let joinUserns: AgentOptions['joinUserns'] = 'auto';
  if (plan.mode === 'run') {
    const [cmd, ...args] = plan.command!;
    held = await HeldCommand.spawn(cmd, args);
    target = { pid: held.pid };
    joinUserns = 'always';
  } else {
    target = plan.target!;
  }

  const offload = plan.offload;
  let agent: NamespaceAgent;
  try {
    agent = await NamespaceAgent.start({
      target,
      joinUserns,
      ifname: plan.ifname,
      mtu: config.mtu,
      mac: config.guestMac ? formatMac(config.guestMac) : undefined,
      vnetHdr: offload,
      configure: plan.configure
        ? {
          ...(config.ipv4Enabled ? { address: formatIpv4(v4.guest), prefixLength: v4.prefixLength, gateway: formatIpv4(v4.gateway) } : {}),
          ipv6: config.ipv6 ? 'slaac' : 'off',
        }
        : undefined,
    });
  } catch (e) {
    held?.kill('SIGKILL');
    throw e;
  }

  if (agent.ipv6Note) log.warn({ note: agent.ipv6Note }, 'IPv6 set-up of the tap was incomplete (SLAAC may be slower)');
  const bindAddress = plan.outboundAddress || plan.outboundAddress6 ? { v4: plan.outboundAddress, v6: plan.outboundAddress6 } : undefined;
  const dns = upstreams.length > 0 && !config.disableDns ? new DnsForwarder({ upstreams, log, bindAddress }) : null;
  let tap: TapHandle | null = null;
  let writer: FrameWriter = offload
    ? {
        write: (f) => tap!.write(f),
        writev: (p) => tap!.writev(p),
        writevOffload: (p, gt, gs, cs, co, hl) => tap!.writevOffload(p, gt, gs, cs, co, hl),
        sendOffload: (h, hl, p, o, l, gt, gs, cs, co) => tap!.sendOffload(h, hl, p, o, l, gt, gs, cs, co),
      }
    : { write: (f) => tap!.write(f), writev: (p) => tap!.writev(p) };
  if (pcap) writer = pcap.wrapWriter(writer);
  if (faults) writer = faults.wrapWriter(writer);
  const stack = new Stack({
    config,
    writer,
    log,
    pingFactory: (family, onReply) => new PingSocket(family, onReply),
    dns,
    outboundAddress: plan.outboundAddress,
    outboundAddress6: plan.outboundAddress6,
    dnsSearch: searchDomains(plan),
  });
  // With offload the guest may send TCP super-frames of up to 64 KiB at any MTU.
  const slotSize = offload ? Math.max(config.mtu, 65535) + 14 : config.mtu + 14;
  const slots = ringSlots(slotSize);
  let receive: FrameReceiver = (ring, size, lengths, n, vnet) => stack.onFrames(ring, size, lengths, n, vnet);
  if (faults) receive = faults.wrapReceiver(receive);
  if (pcap) receive = pcap.wrapReceiver(receive);
  tap = new Tap(agent.tapFd, slotSize, slots, (n) => receive(tap!.ring, slotSize, tap!.lengths, n, tap!.vnet),
    offload ? VNET_HDR_LEN : 0);
  // The express lane reads and writes the tap itself: not with pcap or fault injection between.
  if (offload && !pcap && !faults && process.env['SLIPWAY_EXPRESS'] !== '0') stack.useExpressLane(tap);
  stack.start();

  const forwarder = new PortForwarder({
    agent,
    mode: plan.forwardMode,
    tap: plan.forwardMode === 'tap' ? new GatewayOpener(stack.tcp, v4.gateway) : null,
    log,
    ipv6: config.ipv6 !== null,
  });
  let api: ApiServer | null = null;
  const middlewareStats = (): object => ({ busyPoll: busyPollStats(), ...(faults ? { faults: faults.stats() } : {}), ...(pcap ? { pcap: pcap.stats() } : {}) });
  const trimmer = idleTrimmer(() => tapActivity(tap!.stats()), () => stack.releaseIdleBuffers(), log);

  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => (finish = r));
  let exitWatch: FdWatchHandle | null = null;
  let stopping = false;
  const shutdown = (code: number, reason: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ reason, stats: stack.stats(), tap: tap?.stats(), ...middlewareStats() }, 'shutting down');
    if (log.isLevelEnabled('debug')) log.debug({ memory: memoryReport() }, 'memory at shutdown');
    exitWatch?.close();
    clearInterval(trimmer);
    api?.close();
    forwarder.close();
    stack.close();
    tap?.close();
    faults?.close();
    pcap?.close();
    agent.stop();
    if (plan.pidFile) fs.rmSync(plan.pidFile, { force: true });
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    finish(code);
  };
  const onTerm = (): void => {
    held?.kill('SIGTERM');
    shutdown(0, 'SIGTERM');
  };
  const onInt = (): void => {
    held?.kill('SIGINT');
    shutdown(0, 'SIGINT');
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  agent.onExit = (why: string, code: number | null) => {
    if (code === TARGET_EXITED) {
      // The container's process is gone. In `run` mode the command's own status decides.
      if (held) return;
      log.info({ why }, 'the target process exited');
      shutdown(0, 'target exited');
      return;
    }
    log.error({ why }, 'the namespace agent exited: the namespace is gone or the agent was killed');
    shutdown(1, 'agent exited');
  };

  if (plan.exitFd !== undefined) {
    try {
      exitWatch = new FdWatch(plan.exitFd, 'any', () => shutdown(0, 'exit-fd'));
    } catch (e) {
      shutdown(1, 'bad exit-fd');
      throw new Error(`--exit-fd ${plan.exitFd}: ${(e as Error).message}`);
    }
  }
  if (plan.pidFile) {
    try {
      fs.writeFileSync(plan.pidFile, `${process.pid}\n`);
    } catch (e) {
      shutdown(1, 'pid-file');
      throw new Error(`--pid-file ${plan.pidFile}: cannot write: ${(e as Error).message}`);
    }
  }

  // Forwards and the API are up before readiness is signalled (--ready-fd).
  for (const spec of plan.publish) {
    try {
      await forwarder.add({
        proto: spec.proto,
        hostAddress: spec.hostAddress,
        hostPort: spec.hostPort,
        guestAddress: formatIpv4(v4.guest),
        guestAddressExplicit: false,
        guestPort: spec.containerPort,
        text: spec.text,
      });
    } catch (e) {
      held?.kill('SIGKILL');
      shutdown(1, 'publish failed');
      throw new Error(`--publish ${spec.text}: ${(e as Error).message}`);
    }
  }
  if (plan.apiSocket !== undefined) {
    api = new ApiServer(
      plan.apiSocket,
      forwarderBackend({
        forwarder,
        guestAddress: formatIpv4(v4.guest),
        ipv6: config.ipv6 !== null,
        stats: () => ({ ...stack.stats(), tap: tap?.stats() ?? null, ...middlewareStats() }),
        stackFlows: () => stack.udp.list().map((u) => ({ proto: 'udp', path: 'nat', ...u })),
      }),
      log,
    );
    try {
      await api.listen();
    } catch (e) {
      api = null;
      held?.kill('SIGKILL');
      shutdown(1, 'api socket failed');
      throw e;
    }
  }

  // With --configure, the guest's IPv6 address comes from our RA (SLAAC): wait for it, bounded.
  let slaac: string | undefined;
  if (plan.configure && config.ipv6) {
    try {
      slaac = await agent.waitForGlobalIpv6(SLAAC_WAIT_MS, SLAAC_POLL_MS);
      if (!slaac) log.warn({ waitedMs: SLAAC_WAIT_MS }, 'the guest has no global IPv6 address yet (SLAAC); signalling ready anyway');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'cannot check the guest\'s IPv6 address');
    }
  }

  // How bin/ started this code: the fate of the bundle's V8 code cache (src/cli/boot.cts), or
  // 'no bundle' when Node runs the modules of dist/cli/ (or src/ under a test runner).
  const codeCache = (globalThis as Record<symbol, unknown>)[Symbol.for('slipway.codeCache')] ?? 'no bundle';
  log.info(
    {
      targetPid: 'pid' in target ? target.pid : undefined,
      netns: 'netnsPath' in target ? target.netnsPath : undefined,
      ifname: plan.ifname,
      mtu: config.mtu,
      configured: plan.configure && config.ipv4Enabled ? `${formatIpv4(v4.guest)}/${v4.prefixLength} via ${formatIpv4(v4.gateway)}` : false,
      ipv6: config.ipv6 ? { prefix: `${config.ipv6.prefix}/64`, gateway: config.ipv6.gateway, dns: config.ipv6.dns, slaac } : 'off',
      dns: dns ? upstreams.map((u) => hostPort(u.address, u.port)) : 'off',
      hostLoopback: !config.disableHostLoopback,
      // Since the process started (performance.timeOrigin), and the CPU it used to get here.
      startupMs: Math.round(performance.now()),
      startupCpuMs: cpuMs(process.cpuUsage()),
      codeCache,
    },
    'serving',
  );
  if (codeCache === 'rejected' || codeCache === 'stale') {
    log.warn({ codeCache }, 'the start-up code cache does not fit this Node or this bundle, so start-up compiled everything (slower): `npm run build` rewrites it');
  }
  if (plan.readyFd !== undefined) {
    try {
      fs.writeSync(plan.readyFd, '1');
      fs.closeSync(plan.readyFd);
    } catch (e) {
      log.warn({ err: (e as Error).message, fd: plan.readyFd }, 'cannot write to --ready-fd');
    }
  }

  // Off the start-up path: the DNS forwarder's random query ids need node:crypto.
  setImmediate(warmRandom);
  if (held) {
    held.go();
    held.exited.then(({ code, signal }) => {
      const status = code ?? (signal ? 128 + signalNumber(signal) : 1);
      shutdown(status, `command exited (${signal ?? code})`);
    });
  }
  return done;
}

function cpuMs(u: NodeJS.CpuUsage): number {
  return Math.round((u.user + u.system) / 1000);
}

/** Where the memory is, in MiB: RSS and its peak (VmHWM), the JS heap, and off-heap buffers. */
function memoryReport(): Record<string, number> {
  const mib = (n: number): number => Math.round((n / 1048576) * 10) / 10;
  const m = process.memoryUsage();
  let hwm = 0;
  try {
    const line = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (line) hwm = Number(line[1]) * 1024;
  } catch {
    /* not Linux /proc: leave 0 */
  }
  return {
    rss: mib(m.rss), rssPeak: mib(hwm), heapTotal: mib(m.heapTotal), heapUsed: mib(m.heapUsed),
    external: mib(m.external), arrayBuffers: mib(m.arrayBuffers),
  };
}

function signalNumber(name: string): number {
  const n = (osConstants.signals as Record<string, number>)[name];
  return typeof n === 'number' ? n : 0;
}
