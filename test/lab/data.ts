// Deterministic, incompressible test data shared by the world servers and the in-container
// clients: an AES-128-CTR keystream over zeros with a fixed key. Both sides can generate the same
// N bytes (and so the same sha256) without shipping them around.
import { createCipheriv, createHash } from 'node:crypto';

const KEY = Buffer.from('736c69707761792d6c61622d64617461', 'hex'); // "slipway-lab-data"
const IV = Buffer.alloc(16);
export const CHUNK = 256 * 1024;

/** Yields `total` bytes of deterministic data in chunks of up to CHUNK bytes. */
export function* deterministicChunks(total: number): Generator<Buffer> {
  const cipher = createCipheriv('aes-128-ctr', KEY, IV);
  const zeros = Buffer.alloc(CHUNK);
  let left = total;
  while (left > 0) {
    const n = Math.min(left, CHUNK);
    yield cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n));
    left -= n;
  }
}

export function sha256OfDeterministic(total: number): string {
  const h = createHash('sha256');
  for (const c of deterministicChunks(total)) h.update(c);
  return h.digest('hex');
}

export const WORLD_HTTP_BODY = 'hello from the slipway test world\n';
export const HOST_LOOPBACK_BODY = 'hello from the host loopback\n';
