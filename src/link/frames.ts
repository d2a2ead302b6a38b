/**
 * The frame path between the tap and the stack, and the middleware that may sit on it (like
 * smoltcp's `phy` wrappers): pcap capture (`pcap.ts`) and fault injection (`faults.ts`). Each one
 * wraps a `FrameWriter` (stack → guest) and a `FrameReceiver` (guest → stack) and hands on the
 * same shapes, so the stack never knows they are there. With none configured nothing is wrapped.
 *
 * Order (serve.ts): tap ↔ pcap ↔ faults ↔ stack. The capture sits next to the tap, so it shows
 * what really crossed it: frames the guest sent before any fault, frames that reached the guest
 * after them (a dropped frame toward the guest is not in the file; a duplicated one is twice).
 */

/**
 * A batch of frames from the tap: frame `i` is `lengths[i]` bytes at `ring[i * slotSize]`, its
 * virtio-net header (when the tap has one) at `vnet[i * VNET_HDR_LEN]`. The bytes are valid only
 * until the call returns (the ring is reused), and the callee's batch ends when it returns.
 */
export type FrameReceiver = (ring: Uint8Array, slotSize: number, lengths: Int32Array, count: number, vnet: Uint8Array | null) => void;
