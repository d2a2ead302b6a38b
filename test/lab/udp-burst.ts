// Send N distinct datagrams of SIZE bytes (a few of them shorter) to a UDP echo server as fast as
// the socket takes them, in rounds, and check every echo: its length and its bytes must be those
// of the datagram its sequence number names. Prints one JSON line
// { sent, echoed, corrupt, duplicates, errors }.
//   node --import tsx test/lab/udp-burst.ts HOST PORT N SIZE [udp4|udp6]
import * as dgram from 'node:dgram';

const [host, portText, nText, sizeText, type = 'udp4'] = process.argv.slice(2);
const port = Number(portText);
const n = Number(nText);
const size = Number(sizeText);

/** Datagram i: its number, then bytes that depend on it; every 7th is shorter. */
function datagram(i: number): Buffer {
  const len = i % 7 === 6 ? Math.max(8, size - 100 - (i % 50)) : size;
  const b = Buffer.alloc(len);
  b.writeUInt32BE(i, 0);
  b.writeUInt32BE(len, 4);
  for (let k = 8; k < len; k++) b[k] = (i * 31 + k * 7) & 0xff;
  return b;
}

const s = dgram.createSocket({ type: type as 'udp4' | 'udp6', recvBufferSize: 8 << 20 });
const seen = new Set<number>();
let corrupt = 0;
let duplicates = 0;
const errors: string[] = [];
s.on('message', (m) => {
  const i = m.length >= 8 ? m.readUInt32BE(0) : -1;
  if (i < 0 || i >= n || !m.equals(datagram(i))) {
    corrupt++;
    return;
  }
  if (seen.has(i)) duplicates++;
  seen.add(i);
});
s.on('error', (e) => errors.push(e.message));
await new Promise<void>((r) => s.bind(0, r));
// Rounds of 32 back to back, so echoes come back in bursts the stack reads together.
for (let i = 0; i < n; i += 32) {
  await Promise.all(Array.from({ length: Math.min(32, n - i) }, (_, k) => new Promise<void>((r) => s.send(datagram(i + k), port, host, (e) => {
    if (e) errors.push(e.message);
    r();
  }))));
  await new Promise((r) => setTimeout(r, 2));
}
await new Promise((r) => setTimeout(r, 1500));
console.log(JSON.stringify({ sent: n, echoed: seen.size, corrupt, duplicates, errors: errors.slice(0, 5) }));
s.close();
