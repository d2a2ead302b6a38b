// ApiServer: socket mode 0600, path length check, framing (EOF or a whole object), size cap, timeouts.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiServer, checkSocketPath } from './ApiServer.js';
import type { ApiBackend } from './protocol.js';

const backend: ApiBackend = {
  ipv6: false,
  addHostfwd: async () => 1,
  listHostfwd: () => [],
  removeHostfwd: () => false,
  stats: () => ({}),
  flows: () => [],
};
const log = pino({ level: 'silent' });
let server: ApiServer | null = null;
let dir = '';
afterEach(() => {
  server?.close();
  server = null;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function start(opts = {}): Promise<string> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slw-api-'));
  const p = path.join(dir, 'api.sock');
  server = new ApiServer(p, backend, log, opts);
  await server.listen();
  return p;
}

function request(p: string, body: string | Buffer, shutdownWrite = true): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(p, () => {
      if (shutdownWrite) s.end(body);
      else s.write(body);
    });
    let out = '';
    s.on('data', (b: Buffer) => (out += b.toString()));
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
}

describe('ApiServer', () => {
  it('creates the socket with mode 0600 and answers one request per connection', async () => {
    const p = await start();
    expect(fs.statSync(p).mode & 0o777).toBe(0o600);
    expect(await request(p, '{"execute":"list_hostfwd"}')).toBe('{"return":{"entries":[]},"entries":[]}');
  });

  it('answers a client that does not shut down its write side once the object is whole', async () => {
    const p = await start();
    expect(await request(p, '{"execute":"get_stats"}', false)).toBe('{"return":{}}');
  });

  it('refuses a 4096-byte request with "too large message"', async () => {
    const p = await start();
    expect(await request(p, Buffer.alloc(5000, 0x20))).toBe('{"error":{"desc":"bad request: too large message"}}');
  });

  it('drops a client that sends nothing after the timeout', async () => {
    const p = await start({ timeoutMs: 100 });
    const t0 = Date.now();
    expect(await request(p, '{"exec', false)).toBe('');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('refuses a path too long for sun_path', () => {
    expect(() => checkSocketPath('/tmp/' + 'x'.repeat(103))).toThrow(/at most 107/);
    expect(() => checkSocketPath('/tmp/' + 'x'.repeat(102))).not.toThrow();
  });
});
