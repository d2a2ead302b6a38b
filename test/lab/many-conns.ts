// Open N TCP connections at once to a sink (servers.ts protocol: send, end, read "<sha256> <n>"),
// each sending a distinct line; prints one JSON line { ok, failed, errors }.
//   node --import tsx test/lab/many-conns.ts HOST PORT N
import { createHash } from 'node:crypto';
import * as net from 'node:net';

function one(host: string, port: number, i: number): Promise<void> {
  const payload = `connection ${i} ${'x'.repeat(i % 100)}\n`;
  const want = `${createHash('sha256').update(payload).digest('hex')} ${Buffer.byteLength(payload)}`;
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let got = '';
    s.setTimeout(60_000, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.end(payload));
    s.on('data', (b: Buffer) => (got += b.toString()));
    s.on('error', reject);
    s.on('close', () => (got.trim() === want ? resolve() : reject(new Error(`connection ${i}: got ${JSON.stringify(got)}`))));
  });
}

async function main(): Promise<void> {
  const [host, portStr, nStr] = process.argv.slice(2);
  const n = Number(nStr);
  const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => one(host!, Number(portStr), i)));
  const errors = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason?.message ?? r));
  process.stdout.write(JSON.stringify({ ok: n - errors.length, failed: errors.length, errors: errors.slice(0, 5) }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`many-conns: ${(e as Error).message}\n`);
  process.exit(1);
});
