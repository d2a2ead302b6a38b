// Bulk TCP client run inside a container netns (via nsenter) against the world's sink/source.
//   node --import tsx test/lab/tcp-client.ts upload   HOST PORT BYTES
//   node --import tsx test/lab/tcp-client.ts download HOST PORT BYTES
//   node --import tsx test/lab/tcp-client.ts echo     HOST PORT COUNT
//     COUNT request/response exchanges on one connection to a TCP echo server, each message
//     waited for and compared: mostly 1-100 bytes, every 10th 3,000 and every 25th 40,000
//     (beyond one MSS at MTU 1500, and beyond one read of the express lane).
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

/** The size of message i of an echo run. */
function echoSize(i: number): number {
  if (i % 25 === 24) return 40_000;
  if (i % 10 === 9) return 3_000;
  return 1 + ((i * 37) % 100);
}

async function echo(host: string, port: number, count: number): Promise<object> {
  const t0 = process.hrtime.bigint();
  const s = await connect(host, port);
  s.setNoDelay(true);
  let got: Buffer[] = [];
  let have = 0;
  let want = 0;
  let wake: (() => void) | null = null;
  let failed: Error | null = null;
  s.on('data', (b: Buffer) => {
    got.push(b);
    have += b.length;
    if (have >= want) wake?.();
  });
  s.on('error', (e) => {
    failed = e;
    wake?.();
  });
  s.on('end', () => {
    failed ??= new Error(`the server closed after ${have} of ${want} bytes`);
    wake?.();
  });
  let bytes = 0;
  let mismatches = 0;
  let seed = 12345;
  for (let i = 0; i < count; i++) {
    const msg = Buffer.allocUnsafe(echoSize(i));
    for (let k = 0; k < msg.length; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      msg[k] = seed >>> 24;
    }
    want = msg.length;
    s.write(msg);
    if (have < want) await new Promise<void>((r) => (wake = r));
    wake = null;
    if (failed) throw failed;
    const back = Buffer.concat(got);
    if (back.length !== msg.length || !back.equals(msg)) mismatches++;
    got = [];
    have = 0;
    bytes += msg.length;
  }
  s.end();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { mode: 'echo', exchanges: count, bytes, mismatches, seconds: secs, meanUs: (secs * 1e6) / count };
}

async function main(): Promise<void> {
  const [mode, host, portStr, bytesStr] = process.argv.slice(2);
  const port = Number(portStr);
  const bytes = Number(bytesStr);
  if (!host || !Number.isInteger(port) || !Number.isSafeInteger(bytes)) {
    throw new Error('usage: tcp-client.ts upload|download HOST PORT BYTES | echo HOST PORT COUNT');
  }
  const r = mode === 'echo' ? await echo(host, port, bytes) : mode === 'upload' ? await upload(host, port, bytes) : await download(host, port, bytes);
  process.stdout.write(JSON.stringify(r) + '\n');
}

main().catch((e) => {
  process.stderr.write(`tcp-client: ${(e as Error).message}\n`);
  process.exit(1);
});
