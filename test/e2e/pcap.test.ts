// Scenario: `--pcap PATH` captures what crosses the tap, both ways: after a ping to the gateway
// and an HTTP fetch, tcpdump reads the file and shows the guest's ARP request and our reply, the
// ICMP echo request and reply, and the TCP exchange with the world server.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WORLD_HTTP_BODY } from '../lab/data.js';
import { GUEST, NET, UNPRIV_UID } from '../lab/lab.js';
import { run } from '../lab/exec.js';
import { skipReason, slipwayOnly, titled, useLab, useStack } from '../lab/scenario.js';

const reason = skipReason(['curl', 'ping', 'tcpdump']) ?? slipwayOnly();

describe.skipIf(!!reason)(titled('--pcap writes a capture tcpdump can read', reason), () => {
  const lab = useLab('pcap');
  let file = '';
  const { ctr, stack } = useStack(lab, () => {
    file = join(lab().stackDir('capture'), 'tap.pcap');
    return { configure: true, extraArgs: ['--pcap', file] };
  });

  it('creates the file mode 0600, owned by the user running slipway', () => {
    const st = statSync(file);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(UNPRIV_UID);
  });

  it('serves ping and HTTP while capturing', async () => {
    const p = await ctr().exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', GUEST.gateway]);
    expect(p.stdout, p.stderr).toMatch(/2 packets transmitted, 2 received/);
    const c = await ctr().exec(['curl', '-sS', '--max-time', '10', `http://${NET.server}/`]);
    expect(c.stdout, c.stderr).toBe(WORLD_HTTP_BODY);
  });

  it('leaves a complete capture at shutdown that shows ARP, ICMP and TCP both ways', async () => {
    await stack().stop();
    expect(stack().alive()).toBe(false);
    const r = await run(['tcpdump', '-nn', '-r', file]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(new RegExp(`ARP, Request who-has ${GUEST.gateway.replace(/\./g, '\\.')} tell ${GUEST.configured.replace(/\./g, '\\.')}`));
    expect(out).toMatch(new RegExp(`ARP, Reply ${GUEST.gateway.replace(/\./g, '\\.')} is-at`));
    expect(out).toMatch(/10\.0\.2\.100 > 10\.0\.2\.2: ICMP echo request/);
    expect(out).toMatch(/10\.0\.2\.2 > 10\.0\.2\.100: ICMP echo reply/);
    expect(out).toMatch(/10\.0\.2\.100\.\d+ > 203\.0\.113\.10\.80: Flags \[S\]/);
    expect(out).toMatch(/203\.0\.113\.10\.80 > 10\.0\.2\.100\.\d+: Flags \[S\.\]/);
    expect(out).toMatch(/HTTP: HTTP\/1\.1 200/);
    expect(r.stderr).not.toMatch(/truncated|bogus/i);
  });
});
