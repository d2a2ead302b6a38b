import { describe, expect, it } from 'vitest';
import { busyPollFromEnv, checkSlirpCidr, parseSlirp4netnsArgs, resolveOutbound, toRunPlan, upstreamsFromEnv, usageText, versionText, type Slirp4netnsOptions } from './slirp4netns.js';

function run(argv: string[]): Slirp4netnsOptions {
  const r = parseSlirp4netnsArgs(argv);
  if (r.kind !== 'run') throw new Error(`expected run, got ${JSON.stringify(r)}`);
  return r.options;
}

function error(argv: string[]): string {
  const r = parseSlirp4netnsArgs(argv);
  if (r.kind !== 'error') throw new Error(`expected error, got ${JSON.stringify(r)}`);
  return r.message;
}

const fakeIfs = () => ({
  lo: [
    { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4' as const, mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' },
    { address: '::1', netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 'IPv6' as const, mac: '00:00:00:00:00:00', internal: true, cidr: '::1/128', scopeid: 0 },
  ],
  'veth-w': [
    { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6' as const, mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
    { address: '198.51.100.1', netmask: '255.255.255.0', family: 'IPv4' as const, mac: '02:00:00:00:00:01', internal: false, cidr: '198.51.100.1/24' },
    { address: '2001:db8:1::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6' as const, mac: '02:00:00:00:00:01', internal: false, cidr: '2001:db8:1::1/64', scopeid: 0 },
  ],
});

describe('slirp4netns command line', () => {
  it('has slirp4netns defaults: MTU 1500, no --configure, no IPv6, tap0, netns-type pid', () => {
    const o = run(['1234']);
    expect(o).toMatchObject({ mtu: 1500, configure: false, enableIpv6: false, tapName: 'tap0', netnsType: 'pid', target: { pid: 1234 }, cidr: '10.0.2.0/24' });
    const plan = toRunPlan(o, {}, fakeIfs);
    expect(plan.stack.mtu).toBe(1500);
    expect(plan.stack.ipv6).toBeNull();
    expect(plan.configure).toBe(false);
    expect(plan.ifname).toBe('tap0');
  });

  it('takes --opt=value, --opt value, short bundles, attached short values and unique prefixes', () => {
    const a = run(['--mtu=9000', '--ready-fd', '4', '-ce3', '-6', '--cid', '10.0.135.128/25', '--disable-host', '4321', 'tun9']);
    expect(a).toMatchObject({ mtu: 9000, readyFd: 4, exitFd: 3, configure: true, enableIpv6: true, cidr: '10.0.135.128/25', disableHostLoopback: true, tapName: 'tun9' });
    const b = run(['-m1400', '4321', '-r', '5']); // options after the positional (GNU permutation)
    expect(b).toMatchObject({ mtu: 1400, readyFd: 5, target: { pid: 4321 } });
  });

  it('Podman\'s command line parses', () => {
    const o = run(['--disable-host-loopback', '--mtu=65520', '--enable-sandbox', '--enable-seccomp', '-c', '-e', '3', '-r', '4', '--netns-type=path', '/proc/self/ns/net', 'tap0']);
    expect(o).toMatchObject({ enableSandbox: true, enableSeccomp: true, netnsType: 'path', target: { netnsPath: '/proc/self/ns/net' }, exitFd: 3, readyFd: 4 });
    const plan = toRunPlan(o, {}, fakeIfs);
    expect(plan.target).toEqual({ netnsPath: '/proc/self/ns/net' });
  });

  it('--cidr: the configured address is network + 100; slirp4netns\' exact messages', () => {
    const plan = toRunPlan(run(['--cidr=10.0.135.128/25', '1']), {}, fakeIfs);
    expect(plan.stack.ipv4.guest).toBe(((10 << 24) | (0 << 16) | (135 << 8) | 228) >>> 0);
    expect(error(['--cidr', '24', '1'])).toBe('invalid CIDR: 24');
    expect(error(['--cidr', 'foo', '1'])).toBe('invalid CIDR: foo');
    expect(error(['--cidr', '10.0.2.0', '1'])).toBe('invalid CIDR: 10.0.2.0');
    expect(error(['--cidr', '10.0.2.100/24', '1'])).toBe('CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24');
    expect(error(['--cidr', '10.0.2.100/26', '1'])).toBe('prefix length needs to be 1-25');
    expect(checkSlirpCidr('10.0.2.0/0')).toBe('prefix length needs to be 1-25');
    expect(checkSlirpCidr('10.0.0.0/8')).toBeNull();
  });

  it('rejects bad values with slirp4netns\' messages', () => {
    expect(error(['-m', '0', '1'])).toBe('MTU must be a positive integer (< 65522)');
    expect(error(['--mtu=65522', '1'])).toBe('MTU must be a positive integer (< 65522)');
    expect(error(['--mtu=abc', '1'])).toBe('MTU must be a positive integer (< 65522)');
    expect(error(['-r', 'x', '1'])).toBe('ready-fd must be a non-negative integer');
    expect(error(['-e', '-1', '1'])).toBe('exit-fd must be a non-negative integer');
    expect(error(['abc'])).toBe('PID must be a positive integer');
    expect(error(['0'])).toBe('PID must be a positive integer');
    expect(error(['--macaddress', '52:54:00:12:34:56', '1'])).toBe('--macaddr cannot be specified when --configure or -c is not specified');
    expect(error(['-c', '--macaddress', 'zz', '1'])).toMatch(/^"zz" is an invalid MAC address\./);
    expect(error(['--target-type=foo', '1'])).toBe('--target-type must be either "netns" or "bess"');
    expect(error(['--target-type=bess', '1'])).toMatch(/bess is not supported/);
    expect(error(['--netns-type=foo', '1'])).toBe('--netns-type must be either "pid" or "path"');
    expect(error(['--netns-type=path', '/nonexistent/netns'])).toBe('existing path expected when --netns-type=path: No such file or directory');
    expect(error(['--userns-path=/nonexistent/userns', '1'])).toBe("userns path doesn't exist: /nonexistent/userns");
    expect(error(['--bogus', '1'])).toBe("slirp4netns: unrecognized option '--bogus'");
    expect(error(['-x', '1'])).toBe("slirp4netns: invalid option -- 'x'");
    expect(error(['1', '--mtu'])).toBe("slirp4netns: option '--mtu' requires an argument");
    expect(error(['--configure=yes', '1'])).toBe("slirp4netns: option '--configure' doesn't allow an argument");
    expect(error(['--enable-s', '1'])).toMatch(/is ambiguous/);
    expect(parseSlirp4netnsArgs([])).toEqual({ kind: 'error', message: '', usage: true });
  });

  it('-c with --macaddress sets the guest MAC; extra positionals only warn', () => {
    const o = run(['-c', '--macaddress=52:54:0:12:34:5f', '1', 'tap0', 'extra']);
    expect(o.warnings).toContain('WARNING: too many arguments');
    expect(Array.from(toRunPlan(o, {}, fakeIfs).stack.guestMac!)).toEqual([0x52, 0x54, 0, 0x12, 0x34, 0x5f]);
  });

  it('--help and --version win wherever they are', () => {
    expect(parseSlirp4netnsArgs(['-c', '--help'])).toEqual({ kind: 'help' });
    expect(parseSlirp4netnsArgs(['-v'])).toEqual({ kind: 'version' });
  });

  it('the help lists every flag Podman and rootlesskit look for', () => {
    const h = usageText('slirp4netns');
    for (const flag of ['--configure', '--exit-fd', '--ready-fd', '--mtu', '--enable-ipv6', '--api-socket', '--cidr', '--disable-host-loopback',
      '--netns-type', '--userns-path', '--enable-sandbox', '--enable-seccomp', '--outbound-addr=', '--outbound-addr6', '--disable-dns',
      '--macaddress', '--target-type', '--help', '--version']) {
      expect(h).toContain(flag);
    }
    expect(h).toMatch(/^Usage: slirp4netns \[OPTION\]\.\.\. PID\|PATH \[TAPNAME\]$/m);
  });

  it('--version prints slirp4netns\' key lines', () => {
    const v = versionText('0.1.0', 'abc123', 'none');
    expect(v).toMatch(/^slirp4netns version \d+\.\d+\.\d+\S*$/m);
    expect(v).toMatch(/^commit: abc123$/m);
    expect(v).toMatch(/^libslirp: /m);
    expect(v).toMatch(/^SLIRP_CONFIG_VERSION_MAX: 4$/m);
    expect(v).toMatch(/^libseccomp: /m);
  });

  it('--outbound-addr(6): addresses, or interface names resolved to their address', () => {
    expect(resolveOutbound('198.51.100.7', 4, fakeIfs)).toBe('198.51.100.7');
    expect(resolveOutbound('veth-w', 4, fakeIfs)).toBe('198.51.100.1');
    expect(resolveOutbound('veth-w', 6, fakeIfs)).toBe('2001:db8:1::1');
    expect(resolveOutbound('2001:db8:0:0::5', 6, fakeIfs)).toBe('2001:db8::5');
    expect(() => resolveOutbound('nosuchif', 4, fakeIfs)).toThrow('outbound-addr has to be valid ipv4 address or interface name.');
    expect(() => resolveOutbound('198.51.100.7', 6, fakeIfs)).toThrow(/outbound-addr6/);
    const plan = toRunPlan(run(['--outbound-addr=veth-w', '--outbound-addr6=lo', '1']), {}, fakeIfs);
    expect(plan.outboundAddress).toBe('198.51.100.1');
    expect(plan.outboundAddress6).toBe('::1');
  });

  it('--disable-dns, -6, -a map onto the plan', () => {
    const plan = toRunPlan(run(['--disable-dns', '-6', '-a', '/run/x.sock', '1']), {}, fakeIfs);
    expect(plan.stack.disableDns).toBe(true);
    expect(plan.stack.ipv6?.prefix).toBe('fd00::');
    expect(plan.apiSocket).toBe('/run/x.sock');
  });

  it('DNS upstreams come from SLIPWAY_DNS_UPSTREAM, else the resolver file', () => {
    expect(upstreamsFromEnv({})).toBeNull();
    expect(upstreamsFromEnv({ SLIPWAY_DNS_UPSTREAM: '203.0.113.53, [2001:db8::53]:5353' })).toEqual([
      { address: '203.0.113.53', port: 53 },
      { address: '2001:db8::53', port: 5353 },
    ]);
    expect(() => upstreamsFromEnv({ SLIPWAY_DNS_UPSTREAM: 'dns.example' })).toThrow(/SLIPWAY_DNS_UPSTREAM/);
    const plan = toRunPlan(run(['1']), { SLIPWAY_RESOLV_CONF: '/tmp/r.conf', SLIPWAY_LOG_LEVEL: 'debug' }, fakeIfs);
    expect(plan.resolvConf).toBe('/tmp/r.conf');
    expect(plan.logLevel).toBe('debug');
    expect(plan.stack.dnsUpstreams).toBeNull();
  });

  it('busy polling: 100 µs unless SLIPWAY_BUSY_POLL_US says otherwise; bad values are named', () => {
    expect(toRunPlan(run(['1']), {}, fakeIfs).busyPollUs).toBe(100);
    expect(toRunPlan(run(['1']), { SLIPWAY_BUSY_POLL_US: '0' }, fakeIfs).busyPollUs).toBe(0);
    expect(busyPollFromEnv({ SLIPWAY_BUSY_POLL_US: '250' })).toBe(250);
    expect(() => busyPollFromEnv({ SLIPWAY_BUSY_POLL_US: 'fast' })).toThrow(/SLIPWAY_BUSY_POLL_US must be a whole number of µs from 0 to 10000 \(got fast\)/);
    expect(() => busyPollFromEnv({ SLIPWAY_BUSY_POLL_US: '20000' })).toThrow(/SLIPWAY_BUSY_POLL_US/);
  });
});
