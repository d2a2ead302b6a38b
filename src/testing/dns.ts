/** DNS messages for tests: a query, and an answer to it with one A record. */

/** A standard query (RD set) for `name`, type `qtype` (A by default), class IN. */
export function buildQuery(id: number, name: string, qtype = 1): Uint8Array {
  const bytes = [id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
  for (const l of name.split('.').filter(Boolean)) bytes.push(l.length, ...Buffer.from(l));
  bytes.push(0, qtype >> 8, qtype & 0xff, 0, 1);
  return Uint8Array.from(bytes);
}

/** Answer `query` with one A record (TTL 60) for `address`, or an empty answer with `rcode`. */
export function answer(query: Buffer, address: number[], rcode = 0): Buffer {
  const out = Buffer.concat([query, Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...address])]);
  out[2] |= 0x80; // QR
  out[3] = 0x80 | rcode; // RA
  out[7] = rcode === 0 ? 1 : 0; // ancount
  return rcode === 0 ? out : out.subarray(0, query.length);
}
