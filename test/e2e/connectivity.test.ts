// Scenario: a rootless container, attached with `--configure`, reaches the gateway, the world
// (by address and by name through the DNS forwarder) over ICMP, TCP and UDP.
// Validated against slirp4netns (SLIPWAY_E2E_STACK=slirp4netns): all of these pass there too.
import { describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { GUEST, NET, PORTS } from '../lab/lab.js';
import { skipReason, titled, useLab, useStack } from '../lab/scenario.js';

const reason = skipReason(['curl', 'ping', 'dig', 'socat']);

describe.skipIf(!!reason)(titled('a configured container reaches the gateway and the world', reason), () => {
  const lab = useLab('connectivity');
  const { ctr, stack } = useStack(lab, { configure: true });

  it('has tap0 configured with 10.0.2.100/24, MTU 65520 and a default route via 10.0.2.2', async () => {
    const addr = await ctr().exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'tap0']);
    expect(addr.stdout).toContain(`inet ${GUEST.configured}/24`);
    const link = await ctr().exec(['ip', '-o', 'link', 'show', 'dev', 'tap0']);
    expect(link.stdout).toMatch(/mtu 65520\b/);
    expect(link.stdout).toMatch(/[<,]UP[,>]/);
    const route = await ctr().exec(['ip', '-4', 'route', 'show', 'default']);
    expect(route.stdout).toContain(`default via ${GUEST.gateway} dev tap0`);
    const lo = await ctr().exec(['ip', '-o', 'link', 'show', 'dev', 'lo']);
    expect(lo.stdout).toMatch(/[<,]UP[,>]/);
  });

  it('answers ping to the gateway 10.0.2.2', async () => {
    const r = await ctr().exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', GUEST.gateway]);
    expect(r.stdout, r.stderr).toMatch(/3 packets transmitted, 3 received/);
  });

  it('answers ping to a world server through ping sockets', async () => {
    const r = await ctr().exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', NET.server]);
    expect(r.stdout, r.stderr).toMatch(/2 packets transmitted, 2 received/);
  });

  it('fetches the world HTTP server by address with curl', async () => {
    const r = await ctr().exec(['curl', '-sS', '--max-time', '10', `http://${NET.server}/`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(WORLD_HTTP_BODY);
  });

  it('resolves world.test through the DNS forwarder at 10.0.2.3 (dig)', async () => {
    const r = await ctr().exec(['dig', '+short', '+time=2', '+tries=2', `@${GUEST.dns}`, NET.worldName, 'A']);
    expect(r.stdout.trim(), r.stderr).toBe(NET.server);
  });

  it('resolves world.test over TCP through the DNS forwarder (dig +tcp)', async () => {
    const r = await ctr().exec(['dig', '+tcp', '+short', '+time=2', '+tries=2', `@${GUEST.dns}`, NET.worldName, 'A']);
    expect(r.stdout.trim(), r.stderr).toBe(NET.server);
  });

  it('fetches http://world.test/ by name with curl, resolving via 10.0.2.3', async () => {
    const r = await ctr().execResolving(GUEST.dns, ['curl', '-sS', '--max-time', '10', `http://${NET.worldName}/`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(WORLD_HTTP_BODY);
  });

  it('gets its datagrams echoed by the world UDP echo server', async () => {
    const payload = `udp-echo-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const r = await ctr().exec(['socat', '-t', '2', '-T', '3', '-', `UDP4:${NET.server}:${PORTS.udpEcho}`], {
      input: payload,
    });
    expect(r.stdout, r.stderr).toBe(payload);
  });

  it('gets a large UDP datagram (8000 bytes) echoed intact', async () => {
    const payload = 'x'.repeat(4000) + 'y'.repeat(4000);
    const r = await ctr().exec(['socat', '-t', '2', '-T', '3', '-', `UDP4:${NET.server}:${PORTS.udpEcho}`], {
      input: payload,
    });
    expect(r.stdout.length, r.stderr).toBe(payload.length);
    expect(r.stdout).toBe(payload);
  });

  it('gets "connection refused" (a RST, not a timeout) for a closed world TCP port', async () => {
    const t0 = Date.now();
    const r = await ctr().exec(['curl', '-sS', '--max-time', '10', `http://${NET.server}:81/`]);
    expect(r.code).not.toBe(0);
    // curl 7.88 says "Couldn't connect to server" for ECONNREFUSED; a dropped SYN would hit --max-time.
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/refused|reset|couldn't connect/i);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('is still running after all of the above', () => {
    expect(stack().alive(), stack().describe()).toBe(true);
  });
});
