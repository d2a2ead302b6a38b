/**
 * virtio_net_hdr (linux/virtio_net.h), as carried before every frame on a tap opened with
 * IFF_VNET_HDR: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers
 * (12 bytes with TUNSETVNETHDRSZ 12; 16-bit fields in the host's byte order).
 */

export const VNET_HDR_LEN = 12;
/** The L4 checksum holds only the pseudo-header sum; the "device" completes it. */
export const VNET_F_NEEDS_CSUM = 1;
/** The checksum was verified already. */
export const VNET_F_DATA_VALID = 2;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_TCPV6 = 4;
