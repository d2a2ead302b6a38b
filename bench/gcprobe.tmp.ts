import { Lab, NET } from '../test/lab/lab.js';
import { BENCH_PORTS, buildRr, endSession, launch, startBenchServers, memoryMB, processTree } from './harness.js';
const lab = await Lab.create('gcp', {});
try {
  const rr = await buildRr(lab);
  await startBenchServers(lab, rr);
  const s = await launch(lab, 'slipway', { mtu: 65520, nodeArgs: (process.argv[2] ?? '--trace-gc').split(' ') });
  const r = await s.container.exec([rr, `client-crr`, NET.server, String(BENCH_PORTS.crr), '3'], { timeoutMs: 60000 });
  console.log(r.stdout.trim(), memoryMB(processTree(s.stack.pid)));
  const text = s.stack.stdout.text();
  await endSession(s);
  const lines = text.split('\n').filter(Boolean);
  console.log(lines.length, 'gc lines'); console.log(lines.slice(-12).join('\n'));
} finally { await lab.destroy(); }
process.exit(0);
