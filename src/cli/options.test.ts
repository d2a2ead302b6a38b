import { describe, expect, it } from 'vitest';
import { parseCommandLine, parseUpstream, UsageError, CommanderError } from './options.js';
import { formatIpv4 } from '../wire/ipv4.js';

const quiet = { writeOut: () => {}, writeErr: () => {} };
const parse = (...argv: string[]) => parseCommandLine(argv, '0.0.0-test', quiet);

describe('slipway command line', () => {
  it('attaches to a PID with slirp4netns-like defaults', () => {
    const p = parse('1234');
    expect(p.mode).toBe('attach');
    expect(p.target).toEqual({ pid: 1234 });
    expect(p.ifname).toBe('tap0');
    expect(p.configure).toBe(false);
    expect(p.stack.mtu).toBe(65520);
    expect(formatIpv4(p.stack.ipv4.guest)).toBe('10.0.2.100');
    expect(formatIpv4(p.stack.ipv4.gateway)).toBe('10.0.2.2');
    expect(formatIpv4(p.stack.ipv4.dns)).toBe('10.0.2.3');
    expect(p.stack.dnsUpstreams).toBeNull();
    expect(p.resolvConf).toBe('/etc/resolv.conf');
  });
  it('takes --netns-path with --userns-path and every option', () => {
    const p = parse('--netns-path', '/run/netns/x', '--userns-path', '/proc/1/ns/user', '--configure', '--mtu', '1500',
      '--cidr', '10.0.135.128/25', '--mac', '02:00:00:00:00:09', '--disable-host-loopback', '--dns-upstream', '203.0.113.53',
      '--dns-upstream', '[2001:db8::53]:5353', '--ready-fd', '3', '--exit-fd', '4', '--pid-file', '/tmp/p', '--log-level', 'debug',
      '--ifname', 'eth9');
    expect(p.target).toEqual({ netnsPath: '/run/netns/x', usernsPath: '/proc/1/ns/user' });
    expect(p.configure).toBe(true);
    expect(p.stack.mtu).toBe(1500);
    expect(formatIpv4(p.stack.ipv4.guest)).toBe('10.0.135.228');
    expect(p.stack.disableHostLoopback).toBe(true);
    expect(p.stack.dnsUpstreams).toEqual([{ address: '203.0.113.53', port: 53 }, { address: '2001:db8::53', port: 5353 }]);
    expect([p.readyFd, p.exitFd, p.pidFile, p.logLevel, p.ifname]).toEqual([3, 4, '/tmp/p', 'debug', 'eth9']);
  });
  it('runs a command, configuring by default', () => {
    const p = parse('run', '--mtu', '9000', '--', 'sh', '-c', 'exit 7');
    expect(p.mode).toBe('run');
    expect(p.command).toEqual(['sh', '-c', 'exit 7']);
    expect(p.configure).toBe(true);
    expect(parse('run', '--no-configure', '--', 'true').configure).toBe(false);
  });
  it('names the problem in bad input', () => {
    expect(() => parse()).toThrow(UsageError);
    expect(() => parse('abc')).toThrow(/not a PID/);
    expect(() => parse('12', '--netns-path', '/x')).toThrow(/not both/);
    expect(() => parse('12', '--userns-path', '/x')).toThrow(/goes with --netns-path/);
    expect(() => parse('12', '--mtu', '70000')).toThrow(/--mtu must be between 68 and 65521/);
    expect(() => parse('12', '--mtu', 'big')).toThrow(/whole number/);
    expect(() => parse('12', '--cidr', '10.0.2.100/24')).toThrow(/network address like 10.0.2.0\/24/);
    expect(() => parse('12', '--cidr', '10.0.2.0/26')).toThrow(/prefix length/);
    expect(() => parse('12', '--mac', 'zz')).toThrow(/--mac/);
    expect(() => parse('12', '--dns-upstream', 'resolver.example')).toThrow(/not an IP address/);
    expect(() => parse('12', '--ifname', 'a-name-that-is-too-long')).toThrow(/interface name/);
    expect(() => parse('12', '--log-level', 'loud')).toThrow(CommanderError);
    expect(() => parse('12', '--bogus')).toThrow(CommanderError);
  });
  it('takes IPv6, forward, API and outbound options', () => {
    const p = parse('1', '--cidr6', 'fd00:1::/64', '-p', '8080:80', '--publish', '[::1]:5353:53/udp', '--forward-mode', 'tap',
      '--api-socket', '/tmp/api.sock', '--outbound-addr', '198.51.100.1', '--outbound-addr6', '2001:db8::1', '--disable-dns');
    expect(p.stack.ipv6).toEqual({ prefix: 'fd00:1::', prefixLength: 64, gateway: 'fd00:1::2', dns: 'fd00:1::3' });
    expect(p.publish.map((f) => `${f.hostAddress}:${f.hostPort}:${f.containerPort}/${f.proto}`)).toEqual(['null:8080:80/tcp', '::1:5353:53/udp']);
    expect([p.forwardMode, p.apiSocket, p.outboundAddress, p.outboundAddress6, p.stack.disableDns]).toEqual(['tap', '/tmp/api.sock', '198.51.100.1', '2001:db8::1', true]);
    expect(parse('1').stack.ipv6?.gateway).toBe('fd00::2');
    expect(parse('1', '--ipv4-only').stack.ipv6).toBeNull();
    expect(parse('1', '--ipv6-only').stack.ipv4Enabled).toBe(false);
    expect(() => parse('1', '--ipv4-only', '--ipv6-only')).toThrow(/exclude each other/);
    expect(() => parse('1', '--cidr6', 'fd00::/48')).toThrow(/must be 64/);
    expect(() => parse('1', '--cidr6', 'fd00::1/64')).toThrow(/interface part must be zero/);
    expect(() => parse('1', '-p', 'x')).toThrow(/--publish "x"/);
    expect(() => parse('1', '--forward-mode', 'fast')).toThrow(CommanderError);
    expect(() => parse('1', '--outbound-addr', 'eth0')).toThrow(/not an IPv4 address/);
  });
  it('takes --busy-poll in µs, 100 by default, 0 for off', () => {
    expect(parse('1').busyPollUs).toBe(100);
    expect(parse('1', '--busy-poll', '0').busyPollUs).toBe(0);
    expect(parse('run', '--busy-poll', '250', '--', 'true').busyPollUs).toBe(250);
    expect(() => parse('1', '--busy-poll', 'fast')).toThrow(/--busy-poll must be a whole number, got "fast"/);
    expect(() => parse('1', '--busy-poll', '20000')).toThrow(/--busy-poll must be between 0 and 10000, got 20000/);
  });
  it('prints help and version through commander', () => {
    let out = '';
    const cap = { writeOut: (s: string) => (out += s), writeErr: () => {} };
    expect(() => parseCommandLine(['--help'], '1.2.3', cap)).toThrow(CommanderError);
    for (const flag of ['--netns-path', '--userns-path', '--ifname', '--configure', '--mtu', '--cidr', '--mac',
      '--disable-host-loopback', '--dns-upstream', '--ready-fd', '--exit-fd', '--pid-file', '--log-level', '--version']) {
      expect(out).toContain(flag);
    }
    out = '';
    expect(() => parseCommandLine(['--version'], '1.2.3', cap)).toThrow(CommanderError);
    expect(out.trim()).toBe('1.2.3');
  });
  it('parses upstream forms', () => {
    expect(parseUpstream('192.0.2.1:5353')).toEqual({ address: '192.0.2.1', port: 5353 });
    expect(parseUpstream('2001:db8::1')).toEqual({ address: '2001:db8::1', port: 53 });
  });
});
