/**
 * `npm start`: a self-contained loopback demo. It serves a page on this machine's 127.0.0.1,
 * then uses `slipway run` to start a fresh user+network namespace whose only network is slipway,
 * and fetches the page from inside it through the gateway address 10.0.2.2 (which slipway maps
 * to the host's loopback). Nothing leaves this machine.
 */

import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';

const slipway = fileURLToPath(new URL('../../bin/slipway', import.meta.url));

const server = http.createServer((req, res) => {
  res.end(`hello from the host's loopback; you asked for ${req.url} from ${req.socket.remoteAddress}\n`);
});
server.listen(0, '127.0.0.1', () => {
  const port = (server.address() as AddressInfo).port;
  const script = [
    "const os = require('os');",
    "const addrs = Object.entries(os.networkInterfaces()).map(([n, a]) => n + ' ' + a.map((x) => x.cidr).join(' '));",
    "console.log('inside the namespace, interfaces:', addrs.join(' | '));",
    `fetch('http://10.0.2.2:${port}/demo').then((r) => r.text()).then((t) => { console.log('fetched via 10.0.2.2:', t.trim()); })`,
    '.catch((e) => { console.error("fetch failed:", e.cause ?? e); process.exit(1); });',
  ].join('\n');
  console.log(`demo: serving http://127.0.0.1:${port}/ on the host; starting: slipway run -- node -e <fetch http://10.0.2.2:${port}/demo>`);
  const child = spawn(process.execPath, [slipway, 'run', '--log-level', 'warn', '--', process.execPath, '-e', script], {
    stdio: 'inherit',
  });
  child.on('exit', (code, signal) => {
    server.close();
    if (code === 0) console.log('demo: done — the namespace reached the host only through slipway.');
    else console.log(`demo: slipway run exited with ${signal ?? code}. See the README's requirements (user namespaces, /dev/net/tun).`);
    process.exit(code ?? 1);
  });
});
