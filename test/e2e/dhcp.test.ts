// Scenario: a guest without --configure gets its address from the stack's DHCP server with
// busybox udhcpc: an address in 10.0.2.15-30, router 10.0.2.2, DNS 10.0.2.3, and then works.
// Validated against slirp4netns (its built-in DHCP server behaves the same).
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { GUEST, NET, type Container, type Stack } from '../lab/lab.js';
import { skipReason, STACK, titled, useLab } from '../lab/scenario.js';

const reason = skipReason(['udhcpc', 'curl', 'ping']);

// udhcpc calls this with $1 = deconfig|bound|renew|...; on bound we record the lease and apply it.
const SCRIPT = `#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    {
      echo "ip=$ip"; echo "subnet=$subnet"; echo "mask=$mask"; echo "router=$router"
      echo "dns=$dns"; echo "lease=$lease"; echo "mtu=$mtu"; echo "serverid=$serverid"
    } > "$LEASE_FILE"
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/\${mask:-24}" dev "$interface"
    for r in $router; do ip -4 route replace default via "$r" dev "$interface"; break; done
    ;;
esac
exit 0
`;

function parseLease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

describe.skipIf(!!reason)(titled('udhcpc gets a lease from the stack (no --configure)', reason), () => {
  const lab = useLab('dhcp');
  let ctr: Container;
  let stack: Stack;
  let lease: Record<string, string>;
  let udhcpcOut = '';
  let addrBefore = '';

  beforeAll(async () => {
    ctr = await lab().createContainer();
    stack = await lab().startStack(STACK, ctr, { configure: false });
    const script = join(lab().tmp, 'udhcpc.script');
    writeFileSync(script, SCRIPT);
    chmodSync(script, 0o755);
    const leaseFile = join(lab().tmp, 'lease.env');
    writeFileSync(leaseFile, '');
    await ctr.exec(['ip', 'link', 'set', 'lo', 'up']);
    const up = await ctr.exec(['ip', 'link', 'set', 'tap0', 'up']);
    expect(up.code, `tap0 should exist after attach without --configure: ${up.stderr}`).toBe(0);
    addrBefore = (await ctr.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'tap0'])).stdout;
    const r = await ctr.exec(
      ['env', `LEASE_FILE=${leaseFile}`, 'udhcpc', '-i', 'tap0', '-f', '-q', '-n', '-t', '5', '-T', '2', '-O', 'mtu', '-s', script],
      { timeoutMs: 30_000 },
    );
    udhcpcOut = r.stdout + r.stderr;
    lease = parseLease(readFileSync(leaseFile, 'utf8'));
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('leaves tap0 without an IPv4 address when attached without --configure', () => {
    expect(addrBefore.trim()).toBe('');
  });

  it('gets an address in 10.0.2.15–10.0.2.30 with a /24', () => {
    expect(lease.ip, udhcpcOut).toBeDefined();
    const m = /^10\.0\.2\.(\d+)$/.exec(lease.ip!);
    expect(m, `lease ip ${lease.ip}`).not.toBeNull();
    const last = Number(m![1]);
    expect(last).toBeGreaterThanOrEqual(GUEST.dhcpFirst);
    expect(last).toBeLessThanOrEqual(GUEST.dhcpLast);
    expect(lease.subnet).toBe('255.255.255.0');
  });

  it('is told router 10.0.2.2 and DNS 10.0.2.3, with a lease time', () => {
    expect(lease.router?.split(/\s+/)).toContain(GUEST.gateway);
    expect(lease.dns?.split(/\s+/)).toContain(GUEST.dns);
    expect(Number(lease.lease)).toBeGreaterThan(0);
  });

  it('can use the lease: ping the gateway and fetch from the world', async () => {
    const p = await ctr.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', GUEST.gateway]);
    expect(p.stdout, p.stderr).toMatch(/2 packets transmitted, 2 received/);
    const c = await ctr.exec(['curl', '-sS', '--max-time', '10', `http://${NET.server}/`]);
    expect(c.stdout, c.stderr).toBe(WORLD_HTTP_BODY);
  });

  it('keeps the stack alive', () => {
    expect(stack.alive(), stack.describe()).toBe(true);
  });
});
