#!/usr/bin/env python3
"""Write malformed IPv6 frames into a tap device with an AF_PACKET socket.

Run inside a container netns (nsenter -t PID -n python3 malformed_frames6.py ...). Frames go out
of the container's tap0, straight into the network stack under test. Every address is the
guest's prefix (fd00::/64), link-local, multicast, or documentation space (2001:db8::/32).

Categories: bad payload lengths, truncated headers, bad versions, extension-header loops, hop-by-hop
out of order, extension headers running past the packet, fragment junk (overlaps, never-completing,
nested fragment headers, odd lengths), ICMPv6/NDP junk (bad checksums, hop limit < 255, zero-length
options), UDP/TCP junk, garbage DHCPv6, spoofed sources.

Prints one JSON line: {"sent": N, "attempted": N, "errors": {...}, "categories": {...}, "seed": S}.
"""
import argparse
import socket
import struct
import sys

sys.dont_write_bytecode = True  # run from the checkout: leave no __pycache__ behind in test/lab
from framesend import csum, mac, run  # noqa: E402

ETH_P_IPV6 = 0x86DD
NH_HOP, NH_TCP, NH_UDP, NH_ROUTING, NH_FRAG, NH_ICMP6, NH_NONE, NH_DST = 0, 6, 17, 43, 44, 58, 59, 60


def a6(s: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, s)


class Gen:
    def __init__(self, rnd, src_mac, gw_mac, src, gw, dns, world):
        self.r = rnd
        self.src_mac = src_mac
        self.gw_mac = gw_mac
        self.src = a6(src)
        self.gw = a6(gw)
        self.dns = a6(dns)
        self.world = a6(world)
        self.ll = a6("fe80::1")

    def rb(self, n):
        return bytes(self.r.getrandbits(8) for _ in range(n))

    def dst(self):
        return self.r.choice([self.gw, self.dns, self.world, self.world, a6("fd00::77"), a6("ff02::1")])

    def eth(self, dst_ip=None):
        d = b"\x33\x33" + dst_ip[12:] if dst_ip is not None and dst_ip[0] == 0xFF else self.gw_mac
        return d + self.src_mac + struct.pack("!H", ETH_P_IPV6)

    def ip6(self, nh, payload, dst=None, src=None, plen=None, hop=64, version=6):
        dst = dst or self.dst()
        src = src or self.src
        pl = len(payload) if plen is None else plen
        return self.eth(dst) + struct.pack("!IHBB", version << 28, pl & 0xFFFF, nh, hop) + src + dst + payload

    def l4(self, nh, seg, dst, src=None, good=True, csum_off=None):
        src = src or self.src
        c = csum(src + dst + struct.pack("!IxxxB", len(seg), nh) + seg)
        if nh == NH_UDP and c == 0:
            c = 0xFFFF
        if not good:
            c ^= 1 + self.r.randrange(0xFFFE)
        return seg[:csum_off] + struct.pack("!H", c) + seg[csum_off + 2:]

    def udp(self, dst, sport, dport, data, good=True, src=None):
        seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
        return self.l4(NH_UDP, seg, dst, src, good, 6)

    def icmp6(self, dst, body, good=True, src=None):
        return self.l4(NH_ICMP6, body[:2] + b"\0\0" + body[4:], dst, src, good, 2)

    def ext(self, nh, units=0):
        body = bytes([nh, units]) + b"\x01" + bytes([8 * (units + 1) - 4]) + b"\0" * (8 * (units + 1) - 4)
        return body

    # -- categories ----------------------------------------------------------------------------
    def bad_payload_length(self):
        d = self.world
        seg = self.udp(d, 40000, 7, self.rb(self.r.randrange(0, 64)))
        plen = self.r.choice([len(seg) + 1, len(seg) + 100, 0xFFFF, self.r.randrange(len(seg) + 1, 0x10000)])
        return self.ip6(NH_UDP, seg, dst=d, plen=plen)

    def jumbo_claim(self):
        # payload length 0 with a hop-by-hop header = a jumbogram: never valid on a tap
        return self.ip6(NH_HOP, self.ext(NH_UDP) + self.rb(16), plen=0)

    def truncated_header(self):
        full = self.ip6(NH_UDP, self.udp(self.world, 40001, 7, b"x"), dst=self.world)
        return full[: 14 + self.r.randrange(0, 40)]

    def bad_version(self):
        return self.ip6(NH_UDP, self.udp(self.world, 40002, 7, b"v"), dst=self.world, version=self.r.choice([0, 4, 5, 7, 15]))

    def ext_loop(self):
        n = self.r.randrange(9, 120)
        chain = b"".join(self.ext(NH_DST, self.r.choice([0, 0, 1])) for _ in range(n))
        return self.ip6(NH_DST, chain + self.rb(8))

    def ext_order(self):
        first = self.r.choice([NH_DST, NH_ROUTING])
        chain = self.ext(NH_HOP) + self.ext(NH_UDP)
        return self.ip6(first, chain + self.udp(self.world, 40003, 7, b"o"))

    def ext_truncated(self):
        nh = self.r.choice([NH_HOP, NH_DST, NH_ROUTING, NH_FRAG])
        body = bytes([NH_UDP, self.r.randrange(1, 256)]) + self.rb(self.r.randrange(0, 14))
        return self.ip6(nh, body)

    def fragments(self):
        d = self.world
        off = self.r.choice([0, 8, 1232, 65528, self.r.randrange(0, 8192) * 8])
        more = self.r.random() < 0.7
        data = self.rb(self.r.choice([0, 3, 8, 16, 100, 1232]))
        fh = struct.pack("!BBHI", self.r.choice([NH_UDP, NH_FRAG, NH_ICMP6, NH_DST]), 0, off | (1 if more else 0),
                         self.r.randrange(1, 1 << 32))
        if self.r.random() < 0.2:  # nested fragment header inside
            data = struct.pack("!BBHI", NH_UDP, 0, 1, 7) + data
        return self.ip6(NH_FRAG, fh + data, dst=d)

    def overlapping_fragments(self):
        # two fragments with the same id that overlap; sent as separate frames in turn
        self._ov = getattr(self, "_ov", 0) + 1
        ident = 0x5000 + (self._ov // 2)
        off = 0 if self._ov % 2 else 8
        fh = struct.pack("!BBHI", NH_UDP, 0, off | 1, ident)
        return self.ip6(NH_FRAG, fh + self.rb(64), dst=self.world)

    def bad_icmpv6(self):
        d = self.dst()
        t = self.r.choice([128, 129, 1, 2, 3, 4, 133, 134, 135, 136, 137, 143, 130, 200])
        body = bytes([t, self.r.randrange(3)]) + b"\0\0" + self.rb(self.r.randrange(0, 40))
        if self.r.random() < 0.3:
            body = body[: self.r.randrange(0, 8)]
            return self.ip6(NH_ICMP6, body, dst=d)
        return self.ip6(NH_ICMP6, self.icmp6(d, body, good=self.r.random() < 0.5), dst=d)

    def bad_ndp(self):
        # neighbour/router solicitations that must be ignored: hop limit < 255, zero-length options,
        # multicast target, DAD with a source link-layer option.
        kind = self.r.randrange(4)
        dst = a6("ff02::1:ff00:2")
        if kind == 0:
            body = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + self.gw + b"\x01\x01" + self.src_mac
            return self.ip6(NH_ICMP6, self.icmp6(dst, body, src=self.ll), dst=dst, src=self.ll, hop=64)
        if kind == 1:
            body = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + self.gw + b"\x01\x00" + self.src_mac
            return self.ip6(NH_ICMP6, self.icmp6(dst, body, src=self.ll), dst=dst, src=self.ll, hop=255)
        if kind == 2:
            body = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + a6("ff02::1") + b"\x01\x01" + self.src_mac
            return self.ip6(NH_ICMP6, self.icmp6(dst, body, src=self.ll), dst=dst, src=self.ll, hop=255)
        unspec = a6("::")
        body = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + self.gw + b"\x01\x01" + self.src_mac
        return self.ip6(NH_ICMP6, self.icmp6(dst, body, src=unspec), dst=dst, src=unspec, hop=255)

    def bad_udp6(self):
        d = self.dst()
        kind = self.r.randrange(3)
        seg = self.udp(d, 40004, self.r.choice([7, 53, 547, 9]), self.rb(self.r.randrange(0, 32)), good=kind != 0)
        if kind == 1:
            seg = seg[:6] + b"\0\0" + seg[8:]  # zero checksum: forbidden over IPv6
        if kind == 2:
            seg = seg[:4] + struct.pack("!H", self.r.choice([0, 7, len(seg) + 5, 0xFFFF])) + seg[6:]
        return self.ip6(NH_UDP, seg, dst=d)

    def bad_tcp6(self):
        d = self.r.choice([self.world, self.gw])
        doff = self.r.choice([0, 4, 15, 5])
        seg = struct.pack("!HHIIBBHHH", self.r.randrange(1024, 65536), 80, self.r.getrandbits(32), 0, doff << 4,
                          self.r.choice([0x02, 0x10, 0x04, 0x3F, 0x00]), 65535, 0, 0)
        seg = self.l4(NH_TCP, seg, d, good=self.r.random() < 0.5, csum_off=16)
        return self.ip6(NH_TCP, seg, dst=d)

    def garbage_dhcpv6(self):
        d = a6("ff02::1:2")
        data = self.rb(self.r.randrange(0, 120))
        if self.r.random() < 0.5 and data:
            data = bytes([self.r.choice([1, 3, 5, 11, 12])]) + data[1:4] + b"\x00\x01\xff\xff" + data[4:]
        return self.ip6(NH_UDP, self.udp(d, 546, 547, data, src=self.ll), dst=d, src=self.ll)

    def bad_source(self):
        src = self.r.choice([a6("ff02::1"), self.gw, self.dns, a6("2001:db8:9::1"), a6("fe80::2"), a6("::1")])
        d = self.world
        return self.ip6(NH_UDP, self.udp(d, 40005, 7, b"spoof", src=src), dst=d, src=src)

    def random_after_eth(self):
        return self.eth() + self.rb(self.r.randrange(0, 200))


CATEGORIES = [
    "bad_payload_length", "jumbo_claim", "truncated_header", "bad_version", "ext_loop", "ext_order",
    "ext_truncated", "fragments", "overlapping_fragments", "bad_icmpv6", "bad_ndp", "bad_udp6",
    "bad_tcp6", "garbage_dhcpv6", "bad_source", "random_after_eth",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", default="tap0")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--gw-mac", required=True)
    ap.add_argument("--src-ip", default="fd00::100")
    ap.add_argument("--gw-ip", default="fd00::2")
    ap.add_argument("--dns-ip", default="fd00::3")
    ap.add_argument("--world-ip", default="2001:db8:2::10")
    ap.add_argument("--only", default=None)
    ap.add_argument("--pace", type=int, default=50)
    a = ap.parse_args()

    def pick():
        cats_in_use = a.only.split(",") if a.only else CATEGORIES
        unknown = [c for c in cats_in_use if c not in CATEGORIES]
        if unknown:
            ap.error("unknown categories: %s" % ",".join(unknown))
        return cats_in_use

    def make_gen(rnd, tap_mac):
        return Gen(rnd, tap_mac, mac(a.gw_mac), a.src_ip, a.gw_ip, a.dns_ip, a.world_ip)

    return run(a, make_gen, pick)


if __name__ == "__main__":
    sys.exit(main())
