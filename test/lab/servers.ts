// Test servers for the lab, run inside a lab namespace:
//   node --import tsx test/lab/servers.ts world ADDR [ADDR...]   HTTP :80, UDP echo :7, sink :9000, source :9001,
//     TCP echo :7007, TCP echo that answers every 4th read 15 ms late :7008
//   node --import tsx test/lab/servers.ts host-loopback ADDR PORT   HTTP on ADDR:PORT (host loopback)
// Prints "READY <json>" on stdout once every socket listens. Only ever binds the addresses given.
//
// Protocols:
//   sink   (TCP 9000): read until EOF, then reply "<sha256 hex> <byte count>\n" and close.
//   source (TCP 9001): read a line "<N>\n", send N bytes of deterministic data (data.ts), close.
//                      The sha256 of what was sent is logged on stdout.
import { createHash } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import * as net from 'node:net';
import { deterministicChunks, HOST_LOOPBACK_BODY, WORLD_HTTP_BODY } from './data.js';

export const PORTS = { http: 80, udpEcho: 7, sink: 9000, source: 9001, echo: 7007, slowEcho: 7008 } as const;

function listenTcp(server: net.Server, addr: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: addr, port, exclusive: true }, () => resolve());
  });
}

function httpServer(body: string): http.Server {
  return http.createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.setHeader('x-lab-remote', `${req.socket.remoteAddress}`);
    res.end(body);
  });
}

function sinkServer(): net.Server {
  return net.createServer((sock) => {
    const h = createHash('sha256');
    let n = 0;
    sock.on('data', (b: Buffer) => {
      h.update(b);
      n += b.length;
    });
    sock.on('end', () => sock.end(`${h.digest('hex')} ${n}\n`));
    sock.on('error', () => sock.destroy());
  });
}

/**
 * Echoes what it reads; with delayMs, every 4th read's bytes go back that much later, the others
 * at once after whatever is still waiting (everything stays in order).
 */
function echoServer(delayMs: number): net.Server {
  return net.createServer((sock) => {
    sock.setNoDelay(true);
    let reads = 0;
    let chain = Promise.resolve();
    const later = (f: () => void, late: boolean): void => {
      chain = chain.then(() => (late ? new Promise<void>((r) => setTimeout(r, delayMs)) : undefined)).then(f);
    };
    sock.on('data', (b: Buffer) => {
      if (delayMs === 0) sock.write(b);
      else later(() => sock.writable && sock.write(b), reads++ % 4 === 3);
    });
    sock.on('end', () => (delayMs === 0 ? sock.end() : later(() => sock.end(), false)));
    sock.on('error', () => sock.destroy());
  });
}

function sourceServer(): net.Server {
  return net.createServer((sock) => {
    let line = '';
    const onData = (b: Buffer): void => {
      line += b.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl < 0) {
        if (line.length > 64) sock.destroy();
        return;
      }
      sock.off('data', onData);
      const total = Number(line.slice(0, nl).trim());
      if (!Number.isSafeInteger(total) || total < 0) {
        sock.end('bad request\n');
        return;
      }
      void pump(sock, total);
    };
    sock.on('data', onData);
    sock.on('error', () => sock.destroy());
  });
}

async function pump(sock: net.Socket, total: number): Promise<void> {
  const h = createHash('sha256');
  for (const chunk of deterministicChunks(total)) {
    h.update(chunk);
    if (!sock.write(chunk)) {
      await new Promise<void>((r) => {
        const done = (): void => {
          sock.off('drain', done);
          sock.off('close', done);
          r();
        };
        sock.on('drain', done);
        sock.on('close', done);
      });
      if (sock.destroyed) return;
    }
  }
  sock.end();
  process.stdout.write(`source sent ${total} bytes sha256 ${h.digest('hex')}\n`);
}

function udpEcho(addr: string): Promise<dgram.Socket> {
  const type = addr.includes(':') ? 'udp6' : 'udp4';
  const s = dgram.createSocket({ type });
  s.on('message', (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(PORTS.udpEcho, addr, () => resolve(s));
  });
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'world') {
    if (args.length === 0) throw new Error('world: need at least one address');
    for (const addr of args) {
      await listenTcp(httpServer(WORLD_HTTP_BODY) as unknown as net.Server, addr, PORTS.http);
      await udpEcho(addr);
      await listenTcp(sinkServer(), addr, PORTS.sink);
      await listenTcp(sourceServer(), addr, PORTS.source);
      await listenTcp(echoServer(0), addr, PORTS.echo);
      await listenTcp(echoServer(15), addr, PORTS.slowEcho);
    }
    process.stdout.write(`READY ${JSON.stringify({ mode, addrs: args, ports: PORTS })}\n`);
  } else if (mode === 'host-loopback') {
    const [addr, portStr] = args;
    const port = Number(portStr ?? '0');
    const srv = httpServer(HOST_LOOPBACK_BODY);
    await listenTcp(srv as unknown as net.Server, addr ?? '127.0.0.1', port);
    const bound = (srv.address() as net.AddressInfo).port;
    process.stdout.write(`READY ${JSON.stringify({ mode, addr, port: bound })}\n`);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((e) => {
  process.stderr.write(`servers: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
