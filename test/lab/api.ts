// The control API from a test: one request, slirp4netns style (write, shut down the write side,
// read the answer until the server closes).
import net from 'node:net';

export function apiCall(path: string, body: string | object, opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path, () => s.end(typeof body === 'string' ? body : JSON.stringify(body)));
    let out = '';
    s.on('data', (b: Buffer) => (out += b.toString()));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    if (opts.timeoutMs !== undefined) {
      s.setTimeout(opts.timeoutMs, () => {
        reject(new Error('timeout'));
        s.destroy();
      });
    }
  });
}

export async function apiJson(path: string, body: string | object): Promise<Record<string, any>> {
  const out = await apiCall(path, body);
  try {
    return JSON.parse(out) as Record<string, any>;
  } catch (e) {
    throw new Error(`API answer is not JSON (${(e as Error).message}): ${out}`);
  }
}

/** The counters of the running slipway (get_stats). */
export async function getStats(path: string): Promise<Record<string, any>> {
  return (await apiJson(path, { execute: 'get_stats' })).return;
}
