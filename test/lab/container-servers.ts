// Start the lab's servers (servers.ts) inside a container netns, as lab-tracked processes.
import { join } from 'node:path';
import { waitFor } from './exec.js';
import { REPO, type Container, type Lab } from './lab.js';

/** `args`: `world ADDR` (HTTP/UDP echo/sink/source on ADDR) or `host-loopback ADDR PORT` (HTTP). */
export async function containerServers(lab: Lab, ctr: Container, args: string[]): Promise<void> {
  const name = `ctr-servers-${ctr.pid}-${args.join('-')}`;
  const child = lab.spawnTracked(name, ['nsenter', '-t', String(ctr.pid), '-n', process.execPath, '--import', 'tsx', join(REPO, 'test/lab/servers.ts'), ...args]);
  const ok = await waitFor(() => (lab.logs.get(name)?.text() ?? '').includes('READY') || child.exitCode !== null, 15_000);
  if (!ok || child.exitCode !== null) throw new Error(`container servers did not start:\n${lab.logs.get(name)?.text()}`);
}
