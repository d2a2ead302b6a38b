// Bulk TCP client run inside a container netns (via nsenter) against the world's sink/source.
//   node --import tsx test/lab/tcp-client.ts upload   HOST PORT BYTES
//   node --import tsx test/lab/tcp-client.ts download HOST PORT BYTES
// Prints one JSON line: { mode, bytes, local: sha256 of what we sent/received, remote?: sha256 the
// server reported, expected?: sha256 of the deterministic data, seconds, gbps }.
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { deterministicChunks, sha256OfDeterministic } from './data.js';

function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

async function upload(host: string, port: number, total: number): Promise<object> {
  const t0 = process.hrtime.bigint();
  const s = await connect(host, port);
  const reply: Buffer[] = [];
  s.on('data', (b: Buffer) => reply.push(b));
  const closed = new Promise<void>((resolve, reject) => {
    s.on('end', () => resolve());
    s.on('error', reject);
  });
  const h = createHash('sha256');
  for (const chunk of deterministicChunks(total)) {
    h.update(chunk);
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  s.end();
  await closed;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const [remote, count] = Buffer.concat(reply).toString('utf8').trim().split(/\s+/);
  return {
    mode: 'upload',
    bytes: total,
    local: h.digest('hex'),
    remote,
    remoteBytes: Number(count),
    seconds: secs,
    gbps: (total * 8) / secs / 1e9,
  };
}

async function download(host: string, port: number, total: number): Promise<object> {
  const t0 = process.hrtime.bigint();
  const s = await connect(host, port);
  const h = createHash('sha256');
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (b: Buffer) => {
      h.update(b);
      n += b.length;
    });
    s.on('end', () => resolve());
    s.on('error', reject);
  });
  s.write(`${total}\n`);
  await done;
  s.end();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    mode: 'download',
    bytes: n,
    local: h.digest('hex'),
    expected: sha256OfDeterministic(total),
    seconds: secs,
    gbps: (n * 8) / secs / 1e9,
  };
}

async function main(): Promise<void> {
  const [mode, host, portStr, bytesStr] = process.argv.slice(2);
  const port = Number(portStr);
  const bytes = Number(bytesStr);
  if (!host || !Number.isInteger(port) || !Number.isSafeInteger(bytes)) {
    throw new Error('usage: tcp-client.ts upload|download HOST PORT BYTES');
  }
  const r = mode === 'upload' ? await upload(host, port, bytes) : await download(host, port, bytes);
  process.stdout.write(JSON.stringify(r) + '\n');
}

main().catch((e) => {
  process.stderr.write(`tcp-client: ${(e as Error).message}\n`);
  process.exit(1);
});
