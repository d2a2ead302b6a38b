// The control API's request handling: slirp4netns' shapes and error descs, and our extensions.
import { describe, expect, it } from 'vitest';
import { DESC, handleRequest, parseAddHostfwd, type AddHostfwd, type ApiBackend, type HostfwdEntry } from './protocol.js';

function backend(opts: { ipv6?: boolean; failAdd?: string } = {}): ApiBackend & { added: AddHostfwd[] } {
  const added: AddHostfwd[] = [];
  const entries: HostfwdEntry[] = [];
  return {
    added,
    ipv6: opts.ipv6 ?? false,
    async addHostfwd(r) {
      if (opts.failAdd) throw new Error(opts.failAdd);
      added.push(r);
      const id = added.length;
      entries.push({ id, proto: r.proto, host_addr: r.hostAddr, host_port: r.hostPort, guest_addr: r.guestAddr ?? '10.0.2.100', guest_port: r.guestPort });
      return id;
    },
    listHostfwd: () => entries,
    removeHostfwd(id) {
      const i = entries.findIndex((e) => e.id === id);
      if (i < 0) return false;
      entries.splice(i, 1);
      return true;
    },
    stats: () => ({ frames: { rx: 1 } }),
    flows: () => [{ proto: 'tcp' }],
  };
}

const ask = async (b: ApiBackend, req: string | object): Promise<string> =>
  JSON.stringify(await handleRequest(Buffer.from(typeof req === 'string' ? req : JSON.stringify(req)), b));

describe('control API protocol', () => {
  it('adds, lists and removes forwards with slirp4netns reply shapes', async () => {
    const b = backend();
    const add = { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '0.0.0.0', host_port: 8080, guest_addr: '10.0.2.100', guest_port: 80 } };
    expect(await ask(b, add)).toBe('{"return":{"id":1}}');
    expect(await ask(b, { execute: 'list_hostfwd' })).toBe(
      '{"return":{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]},' +
        '"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}',
    );
    expect(await ask(b, { execute: 'remove_hostfwd', arguments: { id: 1 } })).toBe('{"return":{}}');
    expect(await ask(b, { execute: 'remove_hostfwd', arguments: { id: 1 } })).toBe(`{"error":{"desc":"${DESC.removeId}"}}`);
  });

  it('defaults host_addr to 0.0.0.0 and guest_addr to the configured address', async () => {
    const b = backend();
    await ask(b, { execute: 'add_hostfwd', arguments: { proto: 'udp', host_port: 5353, guest_port: 53 } });
    expect(b.added[0]).toEqual({ proto: 'udp', family: null, hostAddr: '0.0.0.0', hostPort: 5353, guestAddr: null, guestPort: 53 });
    expect(parseAddHostfwd({ proto: 'tcp', host_addr: '', host_port: 1, guest_addr: '', guest_port: 2 }, false)).toMatchObject({ hostAddr: '0.0.0.0', guestAddr: null });
    expect(parseAddHostfwd({ proto: 'tcp', host_addr: '::', host_port: 1, guest_port: 2 }, false)).toMatchObject({ hostAddr: '0.0.0.0' });
    expect(parseAddHostfwd({ proto: 'tcp4', host_port: 1, guest_port: 2 }, false)).toMatchObject({ family: 4 });
  });

  it.each([
    ['', DESC.parse],
    ['{"execute":', DESC.parse],
    ['not json', DESC.parse],
    ['[1,2]', DESC.notObject],
    ['42', DESC.notObject],
    ['{}', DESC.noExecute],
    ['{"execute":7}', DESC.noExecute],
    ['{"execute":"reboot"}', DESC.unknown],
    ['{"execute":"add_hostfwd"}', DESC.proto],
    ['{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":2}}', DESC.proto],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_port":1,"guest_port":2}}', DESC.proto],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"nope","host_port":1,"guest_port":2}}', DESC.hostAddr],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":1,"guest_port":2}}', DESC.hostAddr],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_port":2}}', DESC.hostPort],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":"80","guest_port":2}}', DESC.hostPort],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":70000,"guest_port":2}}', DESC.hostPort],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_addr":"10.0.2","guest_port":2}}', DESC.guestAddr],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080}}', DESC.guestPort],
    ['{"execute":"remove_hostfwd"}', DESC.removeId],
    ['{"execute":"remove_hostfwd","arguments":{"id":"1"}}', DESC.removeId],
  ])('answers %s with "%s"', async (req, desc) => {
    expect(await ask(backend(), req)).toBe(JSON.stringify({ error: { desc } }));
  });

  it('refuses requests of 4096 bytes or more', async () => {
    const big = JSON.stringify({ execute: 'list_hostfwd', pad: 'x'.repeat(4096) });
    expect(await ask(backend(), big)).toBe(`{"error":{"desc":"${DESC.tooLarge}"}}`);
  });

  it('reports a port that cannot be bound with the reason', async () => {
    const b = backend({ failAdd: 'cannot listen on tcp 0.0.0.0:8080: the port is already in use (EADDRINUSE)' });
    const r = await ask(b, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: 8080, guest_port: 80 } });
    expect(JSON.parse(r)).toEqual({ error: { desc: 'add_hostfwd: cannot listen on tcp 0.0.0.0:8080: the port is already in use (EADDRINUSE)' } });
  });

  it('accepts IPv6 addresses when IPv6 is on', () => {
    expect(parseAddHostfwd({ proto: 'tcp6', host_addr: '::1', host_port: 1, guest_port: 2 }, true)).toMatchObject({ family: 6, hostAddr: '::1' });
  });

  it('serves the extensions get_stats and list_flows', async () => {
    const b = backend();
    expect(await ask(b, { execute: 'get_stats' })).toBe('{"return":{"frames":{"rx":1}}}');
    expect(await ask(b, { execute: 'list_flows' })).toBe('{"return":{"flows":[{"proto":"tcp"}]}}');
  });
});
