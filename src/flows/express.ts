/**
 * The express lane's shared state (native/express.c explains the lane: established TCP flows
 * whose request/response segments are handled natively, without a call into JS).
 *
 * A flow on the lane has an Int32Array of EXPRESS_STATE_LEN entries shared with the native side;
 * sequence numbers are stored as their uint32 bit patterns (read them back with `>>> 0`). TcpFlow
 * publishes its numbers there and sets X_FLAGS when it has nothing pending; it syncs (clears
 * X_FLAGS, reads them back, takes over what the lane owes) before it does anything else.
 */

/** Layout of the state array (the same enum as native/express.c). */
export const X_FLAGS = 0;
export const X_RCV_NXT = 1;
export const X_SND_UNA = 2;
export const X_SND_NXT = 3;
export const X_SND_WND = 4;
export const X_WL1 = 5;
export const X_WL2 = 6;
export const X_ADV_EDGE = 7;
export const X_SND_SHIFT = 8;
export const X_RCV_SHIFT = 9;
export const X_LIMIT = 10;
export const X_RCV_MSS = 11;
export const X_SND_MSS = 12;
export const X_GSO = 13;
export const X_EVENTS = 14;
export const X_OWED = 15;
export const X_INFLIGHT = 16;
export const X_TXLEN = 17;
export const X_RX_BYTES = 18;
export const X_RX_SEGS = 19;
export const X_TX_SEGS = 20;
export const X_DUE = 21;
/** ms after which a request the lane took is handed back to JS unanswered (pushAckDelayMs or pushAckQuickMs). */
export const X_ACK_DELAY = 22;
export const EXPRESS_STATE_LEN = 24;

/** X_FLAGS bits: the lane may take guest segments (RX) / send host data (TX). */
export const XF_RX = 1;
export const XF_TX = 2;
/** X_EVENTS bits: the lane took data, moved SND.UNA, sent data (its segment carried the ACK). */
export const XE_RX = 1;
export const XE_ACK = 2;
export const XE_TX = 4;

/** A flow's place on the lane (made by the env's `express` hook). */
export interface ExpressBinding {
  readonly state: Int32Array;
  /** A copy of the bytes the lane sent and the guest has not acknowledged. */
  unacked(): Buffer;
  /** Off the lane (idempotent; closing the host socket does it too). */
  detach(): void;
}
