// Scenario: the gateway address 10.0.2.2 leads to the host's loopback (127.0.0.1, same port),
// and --disable-host-loopback refuses it.
// Validated against slirp4netns (same semantics and same flag).
import { beforeAll, describe, expect, it } from 'vitest';
import { HOST_LOOPBACK_BODY, WORLD_HTTP_BODY } from '../lab/data.js';
import { GUEST, NET } from '../lab/lab.js';
import { skipReason, titled, useLab, useStack } from '../lab/scenario.js';

const reason = skipReason(['curl']);

describe.skipIf(!!reason)(titled('gateway 10.0.2.2 reaches the host loopback', reason), () => {
  const lab = useLab('host-loopback');
  let port: number;

  beforeAll(async () => {
    port = await lab().startHostLoopbackServer('127.0.0.1');
  });

  describe('by default', () => {
    const { ctr } = useStack(lab, { configure: true });

    it('serves a host 127.0.0.1 service at 10.0.2.2:PORT', async () => {
      const r = await ctr().exec(['curl', '-sS', '--max-time', '10', `http://${GUEST.gateway}:${port}/`]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(HOST_LOOPBACK_BODY);
    });

    it('refuses 10.0.2.2 on a port nothing listens on', async () => {
      const r = await ctr().exec(['curl', '-sS', '--max-time', '10', `http://${GUEST.gateway}:${port === 1 ? 2 : port - 1}/`]);
      expect(r.code).toBe(7);
    });
  });

  describe('with --disable-host-loopback', () => {
    const { ctr } = useStack(lab, { configure: true, disableHostLoopback: true });

    it('does not let 10.0.2.2:PORT reach the host loopback service', async () => {
      const r = await ctr().exec(['curl', '-sS', '--max-time', '5', `http://${GUEST.gateway}:${port}/`]);
      expect(r.code).not.toBe(0);
      expect(r.stdout).not.toContain(HOST_LOOPBACK_BODY);
    });

    it('still reaches the world', async () => {
      const r = await ctr().exec(['curl', '-sS', '--max-time', '10', `http://${NET.server}/`]);
      expect(r.stdout, r.stderr).toBe(WORLD_HTTP_BODY);
    });
  });
});
