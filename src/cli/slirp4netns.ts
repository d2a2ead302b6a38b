/**
 * The slirp4netns front end: `slipway-slirp4netns [OPTION]... PID|PATH [TAPNAME]`.
 *
 * Podman, rootlesskit, buildah and usernetes start slirp4netns with a fixed command line, detect
 * features by grepping `--help`, and some scripts grep its error messages. This file reproduces
 * that contract — getopt_long parsing (short bundles, `--opt=value` and `--opt value`, unique
 * prefixes, argument permutation), slirp4netns' defaults (MTU 1500, --configure off, IPv6 only
 * with -6) and its messages and exit codes — and maps it onto slipway's `RunPlan`.
 *
 * Things slirp4netns takes from the machine that a test (or a careful user) may want to steer,
 * without changing the command line Podman builds, come from the environment:
 *   SLIPWAY_DNS_UPSTREAM  DNS servers 10.0.2.3 forwards to (comma-separated, ADDR, ADDR:PORT or
 *                         [ADDR6]:PORT); default: the nameservers of SLIPWAY_RESOLV_CONF.
 *   SLIPWAY_RESOLV_CONF   resolver file to read upstreams from (default /etc/resolv.conf).
 *   SLIPWAY_LOG_LEVEL     fatal|error|warn|info|debug|trace|silent (default info), on stderr.
 *   SLIPWAY_FORWARD_MODE  splice (default) | tap: how API port forwards reach the container.
 *
 * --enable-sandbox and --enable-seccomp are carried out by the native launcher before Node
 * starts (see native/launcher.c and src/cli/sandbox.ts); this file checks that it did.
 */

import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import { DEFAULT_GATEWAY_MAC, planIpv4, planIpv6 } from '../config.js';
import { LOG_LEVELS } from '../log.js';
import { DEFAULT_BUSY_POLL_US, MAX_BUSY_POLL_US, parseUpstream, type RunPlan } from './options.js';
import { checkConfinement, launcherState } from './sandbox.js';
import { packageRootUrl, packageVersion } from '../pkg.js';

export const SLIRP4NETNS_DEFAULT_MTU = 1500;
export const SLIRP4NETNS_MAX_MTU = 65521;
/** The slirp4netns release whose command line this front end implements. */
export const SLIRP4NETNS_COMPAT_VERSION = '1.2.0';
/** Every feature gated by libslirp's config version (outbound addresses, disable-dns, …) is served. */
export const SLIRP_CONFIG_VERSION_MAX = 4;
export const DEFAULT_CIDR = '10.0.2.0/24';

/** Everything the slirp4netns command line can say, checked. */
export interface Slirp4netnsOptions {
  configure: boolean;
  exitFd?: number;
  readyFd?: number;
  mtu: number;
  enableIpv6: boolean;
  apiSocket?: string;
  cidr: string;
  disableHostLoopback: boolean;
  netnsType: 'pid' | 'path';
  usernsPath?: string;
  enableSandbox: boolean;
  enableSeccomp: boolean;
  outboundAddr?: string;
  outboundAddr6?: string;
  disableDns: boolean;
  macAddress?: string;
  /** The target: a PID (netns-type pid) or a netns path. */
  target: { pid: number } | { netnsPath: string };
  tapName: string;
  /** Lines slirp4netns prints on stdout while parsing (e.g. "WARNING: too many arguments"). */
  warnings: string[];
}

export type ParseResult =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'error'; message: string; usage: boolean }
  | { kind: 'run'; options: Slirp4netnsOptions };

interface OptSpec {
  long: string;
  short?: string;
  arg: boolean;
}

/** The option table, in slirp4netns' order (also the order of --help). */
const OPTS: OptSpec[] = [
  { long: 'configure', short: 'c', arg: false },
  { long: 'exit-fd', short: 'e', arg: true },
  { long: 'ready-fd', short: 'r', arg: true },
  { long: 'mtu', short: 'm', arg: true },
  { long: 'enable-ipv6', short: '6', arg: false },
  { long: 'api-socket', short: 'a', arg: true },
  { long: 'cidr', arg: true },
  { long: 'disable-host-loopback', arg: false },
  { long: 'netns-type', arg: true },
  { long: 'userns-path', arg: true },
  { long: 'enable-sandbox', arg: false },
  { long: 'enable-seccomp', arg: false },
  { long: 'outbound-addr', arg: true },
  { long: 'outbound-addr6', arg: true },
  { long: 'disable-dns', arg: false },
  { long: 'macaddress', arg: true },
  { long: 'target-type', arg: true },
  { long: 'help', short: 'h', arg: false },
  { long: 'version', short: 'v', arg: false },
  // Deprecated spellings slirp4netns still accepts.
  { long: 'no-host-loopback', arg: false },
  { long: 'create-sandbox', arg: false },
];

/** slirp4netns' help, flag for flag (Podman looks for each flag name in it). */
export function usageText(argv0: string): string {
  return [
    `Usage: ${argv0} [OPTION]... PID|PATH [TAPNAME]`,
    'User-mode networking for unprivileged network namespaces.',
    '',
    '-c, --configure          bring up the interface',
    '-e, --exit-fd=FD         specify the FD for terminating slirp4netns',
    '-r, --ready-fd=FD        specify the FD to write to when the network is configured',
    `-m, --mtu=MTU            specify MTU (default=${SLIRP4NETNS_DEFAULT_MTU}, max=${SLIRP4NETNS_MAX_MTU})`,
    '-6, --enable-ipv6        enable IPv6',
    '-a, --api-socket=PATH    specify API socket path',
    `--cidr=CIDR              specify network address CIDR (default=${DEFAULT_CIDR})`,
    '--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace',
    '--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)',
    '--userns-path=PATH       specify user namespace path',
    '--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)',
    '--enable-seccomp         enable seccomp to limit syscalls',
    '--outbound-addr=IPv4     sets outbound ipv4 address to bound to (address or interface name)',
    '--outbound-addr6=IPv6    sets outbound ipv6 address to bound to (address or interface name)',
    '--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect',
    '--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)',
    '--target-type=TYPE       specify the target type ([netns|bess], default=netns; bess is not supported by slipway)',
    '-h, --help               show this help and exit',
    '-v, --version            show version and exit',
    '',
    'slipway: a drop-in for slirp4netns (https://github.com/rootless-containers/slirp4netns CLI).',
    'Environment: SLIPWAY_DNS_UPSTREAM (DNS servers for 10.0.2.3, comma-separated; default: the',
    'nameservers of SLIPWAY_RESOLV_CONF, default /etc/resolv.conf), SLIPWAY_LOG_LEVEL (default info).',
    '',
  ].join('\n');
}

/** The `--version` text: slirp4netns' key lines, with slipway's truth in them. */
export function versionText(slipwayVersion: string, commit: string, seccomp: string): string {
  return [
    `slirp4netns version ${SLIRP4NETNS_COMPAT_VERSION}+slipway.${slipwayVersion}`,
    `commit: ${commit}`,
    `libslirp: none (slipway ${slipwayVersion} userspace stack; slirp4netns ${SLIRP4NETNS_COMPAT_VERSION} command line)`,
    `SLIRP_CONFIG_VERSION_MAX: ${SLIRP_CONFIG_VERSION_MAX}`,
    `libseccomp: ${seccomp}`,
    '',
  ].join('\n');
}

/** Raised by the getopt emulation: the message getopt would print. */
class GetoptError extends Error {}

/** GNU getopt_long over OPTS: permutes non-options to the end, `--` ends options. */
function getopt(argv: string[], argv0: string): { opts: { spec: OptSpec; value?: string }[]; positionals: string[] } {
  const opts: { spec: OptSpec; value?: string }[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const exact = OPTS.find((o) => o.long === name);
      const matches = exact ? [exact] : OPTS.filter((o) => o.long.startsWith(name));
      if (matches.length === 0) throw new GetoptError(`${argv0}: unrecognized option '${eq >= 0 ? a.slice(0, eq) : a}'`);
      if (matches.length > 1) {
        throw new GetoptError(`${argv0}: option '${a}' is ambiguous; possibilities: ${matches.map((m) => `'--${m.long}'`).join(' ')}`);
      }
      const spec = matches[0]!;
      if (spec.arg) {
        if (eq >= 0) opts.push({ spec, value: a.slice(eq + 1) });
        else if (i + 1 < argv.length) opts.push({ spec, value: argv[++i]! });
        else throw new GetoptError(`${argv0}: option '--${spec.long}' requires an argument`);
      } else {
        if (eq >= 0) throw new GetoptError(`${argv0}: option '--${spec.long}' doesn't allow an argument`);
        opts.push({ spec });
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const ch = a[j]!;
        const spec = OPTS.find((o) => o.short === ch);
        if (!spec) throw new GetoptError(`${argv0}: invalid option -- '${ch}'`);
        if (!spec.arg) {
          opts.push({ spec });
          continue;
        }
        if (j + 1 < a.length) opts.push({ spec, value: a.slice(j + 1) });
        else if (i + 1 < argv.length) opts.push({ spec, value: argv[++i]! });
        else throw new GetoptError(`${argv0}: option requires an argument -- '${ch}'`);
        break;
      }
      continue;
    }
    positionals.push(a);
  }
  return { opts, positionals };
}

/** strtol(…, 10) with slirp4netns' "whole string" check. */
function parseWholeInt(v: string): number | null {
  if (!/^[+-]?\d+$/.test(v.trim()) || v.trim() !== v) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

/** Check a CIDR the way slirp4netns does, with its exact messages. Returns an error or null. */
export function checkSlirpCidr(cidr: string): string | null {
  const m = /^(([0-9]{1,3}\.){3}[0-9]{1,3})\/([0-9]{1,2})$/.exec(cidr);
  if (!m) return `invalid CIDR: ${cidr}`;
  if (!ipaddr.IPv4.isValidFourPartDecimal(m[1]!)) return `invalid network address: ${m[1]}`;
  const prefix = Number(m[3]);
  if (prefix < 1 || prefix > 25) return 'prefix length needs to be 1-25';
  const net = ipaddr.IPv4.parse(m[1]!).toByteArray();
  const n = ((net[0]! << 24) | (net[1]! << 16) | (net[2]! << 8) | net[3]!) >>> 0;
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  if ((n & mask) >>> 0 !== n) return 'CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24';
  return null;
}

/** Parse a slirp4netns command line (without argv0). Never throws; never touches the network. */
export function parseSlirp4netnsArgs(argv: string[], argv0 = 'slirp4netns', exists: (path: string) => boolean = existsSync): ParseResult {
  let parsed;
  try {
    parsed = getopt(argv, argv0);
  } catch (e) {
    return { kind: 'error', message: (e as Error).message, usage: true };
  }
  const err = (message: string, usage = true): ParseResult => ({ kind: 'error', message, usage });
  const o: Omit<Slirp4netnsOptions, 'target' | 'tapName' | 'netnsType'> & { netnsType?: string; targetType?: string } = {
    configure: false,
    mtu: SLIRP4NETNS_DEFAULT_MTU,
    enableIpv6: false,
    cidr: DEFAULT_CIDR,
    disableHostLoopback: false,
    enableSandbox: false,
    enableSeccomp: false,
    disableDns: false,
    warnings: [],
  };
  for (const { spec, value } of parsed.opts) {
    const v = value ?? '';
    switch (spec.long) {
      case 'help':
        return { kind: 'help' };
      case 'version':
        return { kind: 'version' };
      case 'configure':
        o.configure = true;
        break;
      case 'exit-fd':
      case 'ready-fd': {
        const n = parseWholeInt(v);
        if (n === null || n < 0) return err(`${spec.long} must be a non-negative integer`);
        if (spec.long === 'exit-fd') o.exitFd = n;
        else o.readyFd = n;
        break;
      }
      case 'mtu': {
        const n = parseWholeInt(v);
        if (n === null || n <= 0 || n > SLIRP4NETNS_MAX_MTU) return err('MTU must be a positive integer (< 65522)');
        if (n < 68) return err(`MTU ${n} is too small for IPv4 (slipway needs at least 68; IPv6 needs 1280)`);
        o.mtu = n;
        break;
      }
      case 'enable-ipv6':
        o.enableIpv6 = true;
        break;
      case 'api-socket':
        o.apiSocket = v;
        break;
      case 'cidr':
        o.cidr = v;
        break;
      case 'no-host-loopback':
        o.warnings.push('WARNING: --no-host-loopback is deprecated and will be removed in future releases, please use --disable-host-loopback instead.');
        o.disableHostLoopback = true;
        break;
      case 'disable-host-loopback':
        o.disableHostLoopback = true;
        break;
      case 'netns-type':
        o.netnsType = v;
        break;
      case 'userns-path':
        if (!exists(v)) return err(`userns path doesn't exist: ${v}`);
        o.usernsPath = v;
        break;
      case 'create-sandbox':
        o.warnings.push('WARNING: --create-sandbox is deprecated and will be removed in future releases, please use --enable-sandbox instead.');
        o.enableSandbox = true;
        break;
      case 'enable-sandbox':
        o.enableSandbox = true;
        break;
      case 'enable-seccomp':
        o.enableSeccomp = true;
        break;
      case 'outbound-addr':
        o.outboundAddr = v;
        break;
      case 'outbound-addr6':
        o.outboundAddr6 = v;
        break;
      case 'disable-dns':
        o.disableDns = true;
        break;
      case 'macaddress':
        o.macAddress = v;
        break;
      case 'target-type':
        o.targetType = v;
        break;
    }
  }
  if (o.macAddress !== undefined && !o.configure) return err('--macaddr cannot be specified when --configure or -c is not specified');
  if (o.targetType !== undefined && o.targetType !== 'netns') {
    if (o.targetType === 'bess') {
      return err('--target-type=bess is not supported by slipway: it serves network namespaces only (--target-type=netns)', false);
    }
    return err('--target-type must be either "netns" or "bess"');
  }
  const netnsType = o.netnsType ?? 'pid';
  if (netnsType !== 'pid' && netnsType !== 'path') return err('--netns-type must be either "pid" or "path"');
  const pos = parsed.positionals;
  if (pos.length < 1) return err('', true);
  if (pos.length > 2) o.warnings.push('WARNING: too many arguments');
  let target: Slirp4netnsOptions['target'];
  if (netnsType === 'pid') {
    const pid = parseWholeInt(pos[0]!);
    if (pid === null || pid <= 0) return err('PID must be a positive integer');
    target = { pid };
  } else {
    if (!exists(pos[0]!)) return err('existing path expected when --netns-type=path: No such file or directory');
    target = { netnsPath: pos[0]! };
  }
  if (o.usernsPath !== undefined && netnsType === 'pid') {
    // slirp4netns ignores it with a PID (the PID's own userns wins); say so rather than guess.
    o.warnings.push('WARNING: --userns-path is ignored with --netns-type=pid (the PID\'s user namespace is used)');
    o.usernsPath = undefined;
  }
  const cidrError = checkSlirpCidr(o.cidr);
  if (cidrError) return err(cidrError, false);
  if (o.macAddress !== undefined && !/^([0-9a-fA-F]{1,2}:){5}[0-9a-fA-F]{1,2}$/.test(o.macAddress)) {
    return err(`"${o.macAddress}" is an invalid MAC address.\nmacaddress has to be a valid MAC address (hex string, 6 bytes, each byte separated by a ':').`, false);
  }
  const tapName = pos[1] ?? 'tap0';
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(tapName)) return err(`invalid TAPNAME "${tapName}" (1-15 letters, digits, "_.:-")`, false);
  const { targetType: _t, netnsType: _n, ...rest } = o;
  return { kind: 'run', options: { ...rest, netnsType, target, tapName } };
}

/** An interface's first address of a family, from os.networkInterfaces() (the current netns). */
export type InterfaceLister = () => ReturnType<typeof networkInterfaces>;

/** `--outbound-addr(6)=IPv4|IFACE` → an address, with slirp4netns' messages. */
export function resolveOutbound(value: string, family: 4 | 6, list: InterfaceLister = networkInterfaces): string {
  if (family === 4 && ipaddr.IPv4.isValidFourPartDecimal(value)) return value;
  if (family === 6 && ipaddr.IPv6.isValid(value)) return ipaddr.IPv6.parse(value).toString();
  const ifs = list()[value];
  if (ifs) {
    const a = ifs.find((i) => (family === 4 ? i.family === 'IPv4' : i.family === 'IPv6' && !i.address.toLowerCase().startsWith('fe80:')));
    const any = a ?? ifs.find((i) => i.family === (family === 4 ? 'IPv4' : 'IPv6'));
    if (any) return any.address;
    throw new Error(`outbound-addr${family === 6 ? '6' : ''}: interface ${value} has no IPv${family} address`);
  }
  throw new Error(
    family === 4 ? 'outbound-addr has to be valid ipv4 address or interface name.' : 'outbound-addr6 has to be valid ipv6 address or interface name.',
  );
}

/** DNS upstreams from SLIPWAY_DNS_UPSTREAM, or null to read the resolver file. */
export function upstreamsFromEnv(env: NodeJS.ProcessEnv): { address: string; port: number }[] | null {
  const v = env['SLIPWAY_DNS_UPSTREAM']?.trim();
  if (!v) return null;
  return v
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((s) => {
      try {
        return parseUpstream(s);
      } catch (e) {
        throw new Error(`SLIPWAY_DNS_UPSTREAM: ${(e as Error).message.replace('--dns-upstream ', '')}`);
      }
    });
}

/**
 * How API port forwards reach the container: `splice` (default; sockets made inside the netns,
 * zero-copy) or `tap` (through slipway's TCP over the tap, the peer seen as 10.0.2.2, exactly as
 * with slirp4netns), from SLIPWAY_FORWARD_MODE.
 */
export function forwardModeFromEnv(env: NodeJS.ProcessEnv): RunPlan['forwardMode'] {
  const v = env['SLIPWAY_FORWARD_MODE'] || 'splice';
  if (v !== 'splice' && v !== 'tap') throw new Error(`SLIPWAY_FORWARD_MODE must be splice or tap (got ${v})`);
  return v;
}

/** Map checked slirp4netns options onto slipway's RunPlan. Throws Error with a user message. */
export function toRunPlan(o: Slirp4netnsOptions, env: NodeJS.ProcessEnv = process.env, list: InterfaceLister = networkInterfaces): RunPlan {
  const ipv4 = planIpv4(o.cidr);
  const logLevel = env['SLIPWAY_LOG_LEVEL'] || 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new Error(`SLIPWAY_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const target: RunPlan['target'] =
    'pid' in o.target ? { pid: o.target.pid } : { netnsPath: o.target.netnsPath, ...(o.usernsPath ? { usernsPath: o.usernsPath } : {}) };
  let guestMac: Uint8Array | null = null;
  if (o.macAddress !== undefined) guestMac = Uint8Array.from(o.macAddress.split(':').map((h) => parseInt(h, 16)));
  return {
    mode: 'attach',
    target,
    ifname: o.tapName,
    configure: o.configure,
    stack: {
      ipv4,
      ipv6: o.enableIpv6 ? planIpv6('fd00::/64') : null,
      ipv4Enabled: true,
      mtu: o.mtu,
      guestMac,
      gatewayMac: DEFAULT_GATEWAY_MAC,
      disableHostLoopback: o.disableHostLoopback,
      disableDns: o.disableDns,
      dnsUpstreams: upstreamsFromEnv(env),
    },
    resolvConf: env['SLIPWAY_RESOLV_CONF'] || '/etc/resolv.conf',
    readyFd: o.readyFd,
    exitFd: o.exitFd,
    logLevel,
    publish: [],
    forwardMode: forwardModeFromEnv(env),
    apiSocket: o.apiSocket,
    outboundAddress: o.outboundAddr !== undefined ? resolveOutbound(o.outboundAddr, 4, list) : undefined,
    outboundAddress6: o.outboundAddr6 !== undefined ? resolveOutbound(o.outboundAddr6, 6, list) : undefined,
    offload: process.env.SLIPWAY_OFFLOAD !== '0',
    busyPollUs: busyPollFromEnv(env),
  };
}

/** SLIPWAY_BUSY_POLL_US: the serve loop's busy-poll ceiling (slipway's --busy-poll). */
export function busyPollFromEnv(env: NodeJS.ProcessEnv): number {
  const v = env['SLIPWAY_BUSY_POLL_US'];
  if (v === undefined || v === '') return DEFAULT_BUSY_POLL_US;
  if (!/^\d+$/.test(v) || Number(v) > MAX_BUSY_POLL_US) throw new Error(`SLIPWAY_BUSY_POLL_US must be a whole number of µs from 0 to ${MAX_BUSY_POLL_US} (got ${v})`);
  return Number(v);
}

/** The git commit slipway was built from, when the package is a checkout; else "unknown". */
export function packageCommit(pkgDir: URL): string {
  try {
    const head = readFileSync(new URL('.git/HEAD', pkgDir), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head;
    const ref = head.slice(5);
    try {
      return readFileSync(new URL(`.git/${ref}`, pkgDir), 'utf8').trim();
    } catch {
      const packed = readFileSync(new URL('.git/packed-refs', pkgDir), 'utf8');
      const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`));
      return line ? line.split(' ')[0]! : 'unknown';
    }
  } catch {
    return 'unknown';
  }
}

/** Entry point of bin/slipway-slirp4netns. Resolves with the exit code. */
export async function main(argv: string[], argv0: string, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const pkgDir = packageRootUrl;
  // Inside the sandbox the target paths are not visible: the launcher checked them before.
  const sandboxed = launcherState(env).sandbox;
  const r = parseSlirp4netnsArgs(argv, argv0, sandboxed ? () => true : existsSync);
  if (r.kind === 'help') {
    process.stdout.write(usageText(argv0));
    return 0;
  }
  if (r.kind === 'version') {
    process.stdout.write(versionText(packageVersion(), packageCommit(pkgDir), 'none (slipway-launcher installs its own BPF filter with --enable-seccomp)'));
    return 0;
  }
  if (r.kind === 'error') {
    if (r.message) process.stderr.write(`${r.message}\n`);
    if (r.usage) process.stdout.write(usageText(argv0));
    return 1;
  }
  const o = r.options;
  for (const w of o.warnings) process.stdout.write(`${w}\n`);
  let plan: RunPlan;
  try {
    plan = toRunPlan(o, env);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
  const { createLogger } = await import('../log.js');
  const { serve } = await import('./serve.js');
  const log = createLogger(plan.logLevel, 'slipway-slirp4netns');
  try {
    checkConfinement({ sandbox: o.enableSandbox, seccomp: o.enableSeccomp }, env, log);
    return await serve(plan, log);
  } catch (e) {
    const error = e as Error & { code?: string };
    log.fatal({ code: error.code }, error.message);
    return 1;
  }
}
