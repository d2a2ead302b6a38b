/**
 * slipway's own command line: `slipway [options] PID`, `slipway [options] --netns-path PATH`,
 * `slipway run [options] [-- CMD [ARGS...]]`. Parsing is commander's; this file turns what it
 * parsed into a checked `RunPlan`, with messages that name the flag and the problem.
 */

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_GATEWAY_MAC, planIpv4, planIpv6, type StackConfig } from '../config.js';
import { parsePublish, type PortForwardSpec } from '../forward/publish.js';
import { parseMac } from '../wire/ethernet.js';
import { LOG_LEVELS } from '../log.js';
import ipaddr from 'ipaddr.js';

export const DEFAULT_MTU = 65520;
export const MAX_MTU = 65521;

/** What the CLI asked for, checked. */
export interface RunPlan {
  mode: 'attach' | 'run';
  /** attach: the target. */
  target?: { pid: number } | { netnsPath: string; usernsPath?: string };
  /** run: the command (default $SHELL). */
  command?: string[];
  ifname: string;
  configure: boolean;
  stack: Omit<StackConfig, 'dnsUpstreams'> & { dnsUpstreams: { address: string; port: number }[] | null };
  resolvConf: string;
  readyFd?: number;
  exitFd?: number;
  pidFile?: string;
  logLevel: string;
  /** Port forwards from --publish. */
  publish: PortForwardSpec[];
  /** How inbound TCP reaches the container: spliced sockets made in the netns, or slipway's TCP over the tap. */
  forwardMode: 'splice' | 'tap';
  /** Control API socket path. */
  apiSocket?: string;
  /** Bind outgoing host sockets to this IPv4 address / IPv6 address (interface names resolved by the CLI). */
  outboundAddress?: string;
  outboundAddress6?: string;
  /** Checksum and segmentation offload on the tap (IFF_VNET_HDR + TUNSETOFFLOAD). */
  offload: boolean;
  /** Capture every frame crossing the tap to this pcap file. */
  pcap?: string;
  /** Poll up to this many µs after an event before the loop sleeps (adaptive; 0: never). */
  busyPollUs: number;
}

/** --busy-poll's default, µs: on the 2-core VM a reply that comes within it is caught without a sleep. */
export const DEFAULT_BUSY_POLL_US = 100;
/** --busy-poll's ceiling, µs. */
export const MAX_BUSY_POLL_US = 10_000;

/** A usage error: print the message and exit 1 (2 is commander's for unknown options). */
export class UsageError extends Error {}

function intArg(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** "ADDR", "ADDR:PORT" (IPv4) or "[ADDR]:PORT" (IPv6) → upstream. */
export function parseUpstream(text: string): { address: string; port: number } {
  let addr = text;
  let port = 53;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const v4 = /^([0-9.]+):(\d+)$/.exec(text);
  if (v6) {
    addr = v6[1];
    if (v6[2]) port = Number(v6[2]);
  } else if (v4) {
    addr = v4[1];
    port = Number(v4[2]);
  }
  if (!ipaddr.isValid(addr) || (addr.includes('.') && !ipaddr.IPv4.isValidFourPartDecimal(addr))) {
    throw new InvalidArgumentError(`--dns-upstream "${text}" is not an IP address (e.g. 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)`);
  }
  if (port < 1 || port > 65535) throw new InvalidArgumentError(`--dns-upstream "${text}": port must be 1-65535`);
  return { address: ipaddr.parse(addr).toString(), port };
}

function addCommonOptions(cmd: Command): Command {
  return cmd
    .option('--ifname <name>', 'tap device name inside the namespace', 'tap0')
    .option('--configure', 'configure lo and the tap (address .100, MTU, default route via .2)')
    .option('--no-configure', 'leave the tap unconfigured (e.g. for DHCP)')
    .option('--mtu <n>', `MTU of the tap (68-${MAX_MTU})`, intArg('--mtu', 68, MAX_MTU), DEFAULT_MTU)
    .option('--cidr <A.B.C.D/N>', 'virtual network (gateway .2, DNS .3, DHCP .15-.30, guest .100)', '10.0.2.0/24')
    .option('--mac <mac>', 'MAC address of the tap inside the namespace')
    .option('--cidr6 <prefix/64>', 'IPv6 prefix (gateway ::2, DNS ::3; guests use SLAAC)', 'fd00::/64')
    .option('--ipv4-only', 'no IPv6 on the tap')
    .option('--ipv6-only', 'no IPv4 on the tap')
    .option('--disable-host-loopback', 'refuse connections to the gateway address instead of reaching host 127.0.0.1 / ::1')
    .option('--disable-dns', 'no DNS server at the DNS address (nothing answers there)')
    .option('--dns-upstream <addr>', 'DNS server to forward to (repeatable; default: nameservers of --resolv-conf)', collect)
    .option('--resolv-conf <path>', 'where to read default DNS upstreams from', '/etc/resolv.conf')
    .option('--ready-fd <n>', 'write "1" to this fd and close it once the network is served', intArg('--ready-fd', 0, 1 << 20))
    .option('--exit-fd <n>', 'exit when this fd reports an event (e.g. its writer closes)', intArg('--exit-fd', 0, 1 << 20))
    .option('--pid-file <path>', 'write our PID to this file')
    .option('-p, --publish <spec>', 'forward a host port into the namespace: [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp] (repeatable)', collect)
    .addOption(new Option('--forward-mode <mode>', 'inbound TCP path: splice (sockets made in the netns, zero-copy) or tap (through slipway\'s TCP, peer seen as the gateway, like slirp4netns)').choices(['splice', 'tap']).default('splice'))
    .option('--api-socket <path>', 'serve the control API (slirp4netns-compatible JSON) on this UNIX socket')
    .option('--outbound-addr <addr>', 'bind outgoing IPv4 host sockets to this address')
    .option('--outbound-addr6 <addr>', 'bind outgoing IPv6 host sockets to this address')
    .option('--no-offload', 'no checksum/segmentation offload on the tap (IFF_VNET_HDR): every frame is at most the MTU')
    .option('--pcap <path>', 'capture every frame crossing the tap, both ways, to this pcap file (tcpdump -r PATH)')
    .option('--busy-poll <us>', `after traffic, poll up to this many µs for the next event before sleeping (adaptive: sparse traffic turns it down; 0 = never, max ${MAX_BUSY_POLL_US})`, intArg('--busy-poll', 0, MAX_BUSY_POLL_US), DEFAULT_BUSY_POLL_US)
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'));
}

interface CommonOpts {
  ifname: string;
  configure?: boolean;
  mtu: number;
  cidr: string;
  mac?: string;
  disableHostLoopback?: boolean;
  dnsUpstream?: string[];
  resolvConf: string;
  readyFd?: number;
  exitFd?: number;
  pidFile?: string;
  logLevel: string;
  netnsPath?: string;
  usernsPath?: string;
  cidr6: string;
  ipv4Only?: boolean;
  ipv6Only?: boolean;
  disableDns?: boolean;
  publish?: string[];
  forwardMode: 'splice' | 'tap';
  apiSocket?: string;
  outboundAddr?: string;
  outboundAddr6?: string;
  offload: boolean;
  pcap?: string;
  busyPoll: number;
}

function buildPlan(mode: 'attach' | 'run', o: CommonOpts, configureDefault: boolean): Omit<RunPlan, 'target' | 'command'> {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(o.ifname)) {
    throw new UsageError(`--ifname "${o.ifname}" is not a valid interface name (1-15 letters, digits, "_.:-")`);
  }
  let ipv4;
  try {
    ipv4 = planIpv4(o.cidr);
  } catch (e) {
    throw new UsageError(`--cidr: ${(e as Error).message}`);
  }
  let guestMac: Uint8Array | null = null;
  if (o.mac !== undefined) {
    try {
      guestMac = parseMac(o.mac);
    } catch (e) {
      throw new UsageError(`--mac: ${(e as Error).message}`);
    }
  }
  if (o.ipv4Only && o.ipv6Only) throw new UsageError('--ipv4-only and --ipv6-only exclude each other');
  let ipv6 = null;
  if (!o.ipv4Only) {
    try {
      ipv6 = planIpv6(o.cidr6);
    } catch (e) {
      throw new UsageError(`--cidr6: ${(e as Error).message}`);
    }
  }
  const publish: PortForwardSpec[] = [];
  for (const spec of o.publish ?? []) {
    try {
      publish.push(...parsePublish(spec));
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  if (o.outboundAddr !== undefined && !ipaddr.IPv4.isValidFourPartDecimal(o.outboundAddr)) {
    throw new UsageError(`--outbound-addr "${o.outboundAddr}" is not an IPv4 address`);
  }
  if (o.outboundAddr6 !== undefined && !ipaddr.IPv6.isValid(o.outboundAddr6)) {
    throw new UsageError(`--outbound-addr6 "${o.outboundAddr6}" is not an IPv6 address`);
  }
  if (o.pcap !== undefined && o.pcap.trim() === '') throw new UsageError('--pcap needs a file path');
  let dnsUpstreams: { address: string; port: number }[] | null = null;
  if (o.dnsUpstream) {
    try {
      dnsUpstreams = o.dnsUpstream.map(parseUpstream);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  return {
    mode,
    ifname: o.ifname,
    configure: o.configure ?? configureDefault,
    stack: {
      ipv4,
      ipv6,
      ipv4Enabled: !o.ipv6Only,
      mtu: o.mtu,
      guestMac,
      gatewayMac: DEFAULT_GATEWAY_MAC,
      disableHostLoopback: o.disableHostLoopback ?? false,
      disableDns: o.disableDns ?? false,
      dnsUpstreams,
    },
    resolvConf: o.resolvConf,
    readyFd: o.readyFd,
    exitFd: o.exitFd,
    pidFile: o.pidFile,
    logLevel: o.logLevel,
    publish,
    forwardMode: o.forwardMode,
    apiSocket: o.apiSocket,
    outboundAddress: o.outboundAddr,
    outboundAddress6: o.outboundAddr6,
    offload: o.offload,
    pcap: o.pcap,
    busyPollUs: o.busyPoll,
  };
}

/**
 * Parse argv (without node and script). Returns the plan, or throws UsageError /
 * CommanderError (help, version, unknown option) for the caller to report.
 */
export function parseCommandLine(argv: string[], version: string, out?: { writeOut(s: string): void; writeErr(s: string): void }): RunPlan {
  let plan: RunPlan | undefined;
  const program = new Command('slipway')
    .description('Rootless userspace network stack for containers: gives a network namespace a tap device backed by host sockets.')
    .usage('[options] PID | --netns-path PATH [--userns-path PATH]\n       slipway run [options] [-- CMD [ARGS...]]')
    .version(version, '--version', 'print the version')
    .helpOption('--help', 'show this help')
    .exitOverride()
    .enablePositionalOptions()
    .argument('[pid]', 'attach to the network (and user) namespace of this process')
    .option('--netns-path <path>', 'attach to the network namespace at this path')
    .option('--userns-path <path>', 'join this user namespace first (with --netns-path)');
  if (out) program.configureOutput(out);
  addCommonOptions(program);
  program.action((pid: string | undefined, o: CommonOpts) => {
    const base = buildPlan('attach', o, false);
    let target: RunPlan['target'];
    if (pid !== undefined && o.netnsPath !== undefined) {
      throw new UsageError('give either a PID or --netns-path, not both');
    }
    if (pid !== undefined) {
      if (!/^\d+$/.test(pid) || Number(pid) < 1) throw new UsageError(`"${pid}" is not a PID (expected a positive number)`);
      if (o.usernsPath) throw new UsageError('--userns-path goes with --netns-path; with a PID the user namespace comes from the PID');
      target = { pid: Number(pid) };
    } else if (o.netnsPath !== undefined) {
      target = { netnsPath: o.netnsPath, usernsPath: o.usernsPath };
    } else {
      throw new UsageError('nothing to attach to: give a PID, --netns-path PATH, or use "slipway run -- CMD"');
    }
    plan = { ...base, target };
  });
  const run = new Command('run')
    .description('create a new user+network namespace, give it a network and run CMD (default $SHELL) in it; exits with its status')
    .usage('[options] [-- CMD [ARGS...]]')
    .helpOption('--help', 'show this help')
    .exitOverride()
    .argument('[cmd...]', 'command to run');
  if (out) run.configureOutput(out);
  addCommonOptions(run);
  run.action((cmd: string[], o: CommonOpts) => {
    const base = buildPlan('run', o, true);
    const command = cmd.length > 0 ? cmd : [process.env.SHELL || '/bin/sh'];
    plan = { ...base, command };
  });
  program.addCommand(run);
  program.parse(argv, { from: 'user' });
  if (!plan) throw new UsageError('nothing to do');
  return plan;
}

export { CommanderError };
