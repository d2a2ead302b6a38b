/** A port-forward rule as the forwarders use it, and the counters they keep. */

export interface ForwardRule {
  proto: 'tcp' | 'udp';
  /** Host address to listen on; null = every address of both families. */
  hostAddress: string | null;
  hostPort: number;
  /** The container's address for this rule (the configured address unless the API gave one). */
  guestAddress: string;
  /** True when the API named guest_addr explicitly (then it is the first target). */
  guestAddressExplicit: boolean;
  guestPort: number;
  /** Where it came from, for logs: the --publish text or "api". */
  text: string;
}

/** Counters of all forwards (the API's get_stats reports them). */
export interface ForwardCounters {
  tcpAccepted: number;
  tcpActive: number;
  tcpCompleted: number;
  tcpResets: number;
  /** Could not reach the container (refused, no agent, ...): the host client got a RST. */
  tcpFailed: number;
  /** Over the per-rule connection cap, or the rule was being removed. */
  tcpRejected: number;
  /** Bytes host → container and container → host of finished spliced connections. */
  bytesIn: number;
  bytesOut: number;
  udpPeers: number;
  udpToGuest: number;
  udpToHost: number;
  udpDropped: number;
  /** Events whose handling threw (a bug in slipway; logged with the stack). */
  internalErrors: number;
}

export function newForwardCounters(): ForwardCounters {
  return {
    tcpAccepted: 0, tcpActive: 0, tcpCompleted: 0, tcpResets: 0, tcpFailed: 0, tcpRejected: 0,
    bytesIn: 0, bytesOut: 0, udpPeers: 0, udpToGuest: 0, udpToHost: 0, udpDropped: 0, internalErrors: 0,
  };
}
