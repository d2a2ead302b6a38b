#!/usr/bin/env python3
"""Write malformed Ethernet frames into a tap device with an AF_PACKET socket.

Run inside a container netns (nsenter -t PID -n python3 malformed_frames.py ...). Frames go out
of the container's tap0, i.e. straight into the network stack under test. Every IP address used
is the guest's own subnet (10.0.2.0/24) or a documentation range (198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32); fully random frames stay inside the lab anyway (the lab's host
netns only routes into its world netns).

Prints one JSON line: {"sent": N, "errors": {...}, "categories": {...}, "seed": S}.
"""
import argparse
import random
import socket
import struct
import sys

sys.dont_write_bytecode = True  # run from the checkout: leave no __pycache__ behind in test/lab
from framesend import csum, mac, run  # noqa: E402

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BCAST = b"\xff" * 6


def ip4(a: str) -> bytes:
    return socket.inet_aton(a)


class Gen:
    def __init__(self, rnd: random.Random, src_mac: bytes, gw_mac: bytes, src_ip: str, gw: str, dns: str, world: str):
        self.r = rnd
        self.src_mac = src_mac
        self.gw_mac = gw_mac
        self.src = ip4(src_ip)
        self.gw = ip4(gw)
        self.dns = ip4(dns)
        self.world = ip4(world)

    # -- helpers -------------------------------------------------------------------------------
    def rb(self, n: int) -> bytes:
        return bytes(self.r.getrandbits(8) for _ in range(n))

    def eth(self, ethertype: int, dst: bytes = None) -> bytes:
        return (dst or self.gw_mac) + self.src_mac + struct.pack("!H", ethertype)

    def dst_ip(self) -> bytes:
        c = self.r.random()
        if c < 0.3:
            return self.gw
        if c < 0.5:
            return self.dns
        if c < 0.8:
            return self.world
        if c < 0.9:
            return ip4("10.0.2.%d" % self.r.randrange(256))
        return ip4("%s.%d" % (self.r.choice(["198.51.100", "203.0.113"]), self.r.randrange(256)))

    def ipv4(self, proto: int, payload: bytes, dst: bytes = None, ihl: int = 5, total: int = None,
             good_csum: bool = True, frag: int = 0, ttl: int = 64, version: int = 4, options: bytes = b"") -> bytes:
        dst = dst or self.dst_ip()
        tl = total if total is not None else ihl * 4 + len(payload)
        hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | (ihl & 0xF), 0, tl & 0xFFFF,
                          self.r.getrandbits(16), frag & 0xFFFF, ttl, proto, 0, self.src, dst) + options
        c = csum(hdr[:20 + len(options)])
        if not good_csum:
            c ^= 1 + self.r.randrange(0xFFFE)
        hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
        return hdr + payload

    def l4_csum(self, proto: int, dst: bytes, seg: bytes) -> int:
        pseudo = self.src + dst + struct.pack("!BBH", 0, proto, len(seg))
        return csum(pseudo + seg)

    def udp(self, dst: bytes, sport: int, dport: int, data: bytes, good: bool = True, length: int = None) -> bytes:
        ln = length if length is not None else 8 + len(data)
        seg = struct.pack("!HHHH", sport, dport, ln & 0xFFFF, 0) + data
        c = self.l4_csum(17, dst, seg) or 0xFFFF
        if not good:
            c ^= 1 + self.r.randrange(0xFFFE)
            c = c or 1
        return seg[:6] + struct.pack("!H", c) + seg[8:]

    def tcp(self, dst: bytes, dport: int, flags: int, good: bool = True, doff: int = 5,
            options: bytes = b"", data: bytes = b"") -> bytes:
        seg = struct.pack("!HHIIBBHHH", self.r.randrange(1024, 65536), dport, self.r.getrandbits(32),
                          self.r.getrandbits(32), (doff & 0xF) << 4, flags, self.r.getrandbits(16), 0, 0) + options + data
        c = self.l4_csum(6, dst, seg)
        if not good:
            c ^= 1 + self.r.randrange(0xFFFE)
        return seg[:16] + struct.pack("!H", c) + seg[18:]

    # -- categories ----------------------------------------------------------------------------
    # The kernel refuses packet-socket frames shorter than an Ethernet header (14 bytes), so the
    # shortest thing a tap can ever deliver is a bare header: that is our "truncated" case.
    def random_bytes(self):
        return self.rb(self.r.randrange(14, 1514))

    def random_after_eth(self):
        et = self.r.choice([ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, self.r.getrandbits(16)])
        dst = self.r.choice([self.gw_mac, BCAST])
        return self.eth(et, dst) + self.rb(self.r.randrange(0, 200))

    def truncated_eth(self):
        et = self.r.choice([ETH_P_IP, ETH_P_ARP, ETH_P_IPV6])
        return self.eth(et, self.r.choice([self.gw_mac, BCAST])) + self.rb(self.r.randrange(0, 8))

    def truncated_ipv4(self):
        full = self.ipv4(17, self.udp(self.world, 40000, 7, b"x"), dst=self.world)
        return self.eth(ETH_P_IP) + full[: self.r.randrange(0, 20)]

    def bad_ihl(self):
        ihl = self.r.choice([0, 1, 2, 3, 4, 15])
        pay = self.rb(self.r.randrange(0, 40))
        return self.eth(ETH_P_IP) + self.ipv4(17, pay, ihl=ihl, total=20 + len(pay))

    def bad_total_length(self):
        pay = self.udp(self.world, 40001, 7, self.rb(self.r.randrange(0, 64)))
        real = 20 + len(pay)
        total = self.r.choice([0, 1, 19, real + 1, real + 100, 0xFFFF, self.r.randrange(0, 20)])
        return self.eth(ETH_P_IP) + self.ipv4(17, pay, dst=self.world, total=total)

    def bad_ip_checksum(self):
        pay = self.udp(self.world, 40002, 7, b"bad ip checksum")
        return self.eth(ETH_P_IP) + self.ipv4(17, pay, dst=self.world, good_csum=False)

    def bad_version(self):
        pay = self.udp(self.world, 40003, 7, b"v")
        return self.eth(ETH_P_IP) + self.ipv4(17, pay, dst=self.world, version=self.r.choice([0, 5, 6, 15]))

    def bad_udp(self):
        dst = self.r.choice([self.world, self.dns, self.gw])
        dport = self.r.choice([7, 53, 67, 9])
        data = self.rb(self.r.randrange(0, 100))
        if self.r.random() < 0.5:
            seg = self.udp(dst, 40004, dport, data, good=False)
        else:
            seg = self.udp(dst, 40004, dport, data, length=self.r.choice([0, 1, 7, 8 + len(data) + 1, 0xFFFF]))
        return self.eth(ETH_P_IP) + self.ipv4(17, seg, dst=dst)

    def truncated_udp(self):
        seg = self.udp(self.world, 40005, 7, b"0123456789")
        return self.eth(ETH_P_IP) + self.ipv4(17, seg[: self.r.randrange(0, 8)], dst=self.world)

    def bad_tcp(self):
        dst = self.r.choice([self.world, self.gw, self.dns])
        dport = self.r.choice([80, 9000, 9001, 53, 5201, 1])
        kind = self.r.randrange(5)
        if kind == 0:  # SYN with a bad checksum
            seg = self.tcp(dst, dport, 0x02, good=False, options=b"\x02\x04\x05\xb4")
        elif kind == 1:  # data offset too small or past the end
            seg = self.tcp(dst, dport, 0x02, doff=self.r.choice([0, 1, 4, 15]))
        elif kind == 2:  # truncated header
            seg = self.tcp(dst, dport, 0x02)[: self.r.randrange(0, 20)]
        elif kind == 3:  # garbage / malformed options (bad lengths) on a SYN, bad checksum
            opts = self.r.choice([b"\x02\x00\x00\x00", b"\x03\xff\x07\x00", b"\x08\x01\x00\x00", self.rb(8)])
            seg = self.tcp(dst, dport, 0x02, doff=7, options=opts, good=False)
        else:  # random flag soup for a connection that does not exist, bad checksum
            seg = self.tcp(dst, dport, self.r.getrandbits(8), good=False, data=self.rb(self.r.randrange(0, 50)))
        return self.eth(ETH_P_IP) + self.ipv4(6, seg, dst=dst)

    def unsolicited_tcp(self):
        # Valid checksums, no connection: ACK/FIN/RST/data segments to random ports. Must be
        # answered with RST or dropped, never crash or open anything.
        dst = self.r.choice([self.world, self.gw])
        flags = self.r.choice([0x10, 0x11, 0x04, 0x18, 0x14, 0x01])
        seg = self.tcp(dst, self.r.randrange(1, 65536), flags, data=self.rb(self.r.randrange(0, 30)))
        return self.eth(ETH_P_IP) + self.ipv4(6, seg, dst=dst)

    def bad_icmp(self):
        dst = self.r.choice([self.gw, self.dns, self.world])
        kind = self.r.randrange(4)
        if kind == 0:  # echo with a bad checksum
            body = struct.pack("!BBHHH", 8, 0, 0, self.r.getrandbits(16), 1) + self.rb(16)
            c = csum(body) ^ 0x5A5A
            body = body[:2] + struct.pack("!H", c) + body[4:]
        elif kind == 1:  # truncated
            body = self.rb(self.r.randrange(0, 8))
        elif kind == 2:  # random type/code, valid checksum
            body = struct.pack("!BBH", self.r.randrange(256), self.r.randrange(256), 0) + self.rb(self.r.randrange(0, 40))
            body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        else:  # an ICMP error quoting garbage
            quoted = self.rb(self.r.randrange(0, 40))
            body = struct.pack("!BBHI", 3, self.r.randrange(16), 0, 0) + quoted
            body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        return self.eth(ETH_P_IP) + self.ipv4(1, body, dst=dst)

    def fragments(self):
        # Random fragments that never complete (MF set, odd offsets, overlaps, tiny first frags).
        off = self.r.randrange(0, 8192)
        mf = 0x2000 if self.r.random() < 0.8 else 0
        df = 0x4000 if self.r.random() < 0.1 else 0
        pay = self.rb(self.r.choice([0, 1, 8, 24, 200, 1400]))
        proto = self.r.choice([1, 6, 17, 255])
        return self.eth(ETH_P_IP) + self.ipv4(proto, pay, frag=mf | df | off)

    def ip_options(self):
        opts = self.r.choice([b"\x01\x01\x01\x00", b"\x07\x07\x04\x00\x00\x00\x00\x00",
                              b"\x44\x0c\x05\x00" + b"\x00" * 8, b"\x83\x03\x04\x00", self.rb(8)])
        ihl = 5 + len(opts) // 4
        pay = self.udp(self.world, 40006, 7, b"opts")
        return self.eth(ETH_P_IP) + self.ipv4(17, pay, dst=self.world, ihl=ihl, options=opts)

    def ttl_zero(self):
        pay = self.udp(self.world, 40007, 7, b"ttl")
        return self.eth(ETH_P_IP) + self.ipv4(17, pay, dst=self.world, ttl=self.r.choice([0, 1]))

    def bad_arp(self):
        kind = self.r.randrange(3)
        if kind == 0:  # truncated
            body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + self.src_mac + self.src + b"\0" * 6 + self.gw
            body = body[: self.r.randrange(0, 28)]
        elif kind == 1:  # weird hardware/protocol lengths and opcodes
            body = struct.pack("!HHBBH", self.r.randrange(4), self.r.choice([0x0800, 0x86DD, 0]),
                               self.r.randrange(256), self.r.randrange(256), self.r.randrange(65536)) + self.rb(20)
        else:  # request for a random address in the subnet (valid form)
            body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + self.src_mac + self.src + b"\0" * 6 + \
                ip4("10.0.2.%d" % self.r.randrange(256))
        return self.eth(ETH_P_ARP, self.r.choice([self.gw_mac, BCAST])) + body

    def bad_ipv6(self):
        src = socket.inet_pton(socket.AF_INET6, "fd00::100")
        dst = socket.inet_pton(socket.AF_INET6, self.r.choice(["fd00::2", "fd00::3", "2001:db8:2::10", "ff02::1"]))
        pay = self.rb(self.r.randrange(0, 64))
        plen = self.r.choice([len(pay), len(pay) + 10, 0xFFFF, 0])
        nh = self.r.choice([0, 6, 17, 58, 43, 44, 60, 59, 255])
        hdr = struct.pack("!IHBB", 0x60000000, plen, nh, 64) + src + dst
        if self.r.random() < 0.3:
            hdr = hdr[: self.r.randrange(0, 40)]
        dmac = self.r.choice([self.gw_mac, b"\x33\x33\x00\x00\x00\x01"])
        return self.eth(ETH_P_IPV6, dmac) + hdr + pay

    def garbage_dhcp(self):
        # UDP 68 -> 67 broadcast with a valid UDP checksum and a garbage / truncated BOOTP body.
        data = self.rb(self.r.randrange(0, 300))
        if self.r.random() < 0.5 and len(data) > 240:
            data = b"\x01\x01\x06\x00" + data[4:236] + b"\x63\x82\x53\x63" + data[240:]  # magic cookie, junk options
        seg = struct.pack("!HHHH", 68, 67, 8 + len(data), 0) + data
        src_save = self.src
        self.src = ip4("0.0.0.0")
        dst = ip4("255.255.255.255")
        c = self.l4_csum(17, dst, seg) or 0xFFFF
        seg = seg[:6] + struct.pack("!H", c) + seg[8:]
        frame = self.eth(ETH_P_IP, BCAST) + self.ipv4(17, seg, dst=dst)
        self.src = src_save
        return frame

    def garbage_dns(self):
        # UDP to the DNS forwarder with a valid checksum and a garbage / truncated DNS message.
        data = self.rb(self.r.randrange(0, 64))
        if self.r.random() < 0.5:
            # header claiming many questions, then truncated or looping name compression pointers
            data = struct.pack("!HHHHHH", self.r.getrandbits(16), 0x0100, self.r.randrange(1, 65535), 0, 0, 0) + \
                self.r.choice([b"\xc0\x0c", b"\x3f" + b"a" * 10, b"\x05world\x04te", b"\xc0\x0c\xc0\x0e", b""])
        seg = self.udp(self.dns, self.r.randrange(1024, 65536), 53, data)
        return self.eth(ETH_P_IP) + self.ipv4(17, seg, dst=self.dns)


CATEGORIES = [
    "random_bytes", "random_after_eth", "truncated_eth", "truncated_ipv4", "bad_ihl",
    "bad_total_length", "bad_ip_checksum", "bad_version", "bad_udp", "truncated_udp", "bad_tcp",
    "unsolicited_tcp", "bad_icmp", "fragments", "ip_options", "ttl_zero", "bad_arp", "bad_ipv6",
    "garbage_dhcp", "garbage_dns",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", default="tap0")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--gw-mac", required=True)
    ap.add_argument("--src-mac", default=None, help="the tap's own MAC (default: read via SIOCGIFHWADDR)")
    ap.add_argument("--src-ip", default="10.0.2.100")
    ap.add_argument("--gw-ip", default="10.0.2.2")
    ap.add_argument("--dns-ip", default="10.0.2.3")
    ap.add_argument("--world-ip", default="203.0.113.10")
    ap.add_argument("--only", default=None, help="comma-separated categories to use (default: all)")
    ap.add_argument("--exclude", default=None, help="comma-separated categories to leave out")
    ap.add_argument("--pace", type=int, default=50, help="pause 1 ms after this many frames")
    a = ap.parse_args()

    def pick():
        cats_in_use = a.only.split(",") if a.only else CATEGORIES
        if a.exclude:
            cats_in_use = [c for c in cats_in_use if c not in a.exclude.split(",")]
        unknown = [c for c in cats_in_use if c not in CATEGORIES]
        if unknown or not cats_in_use:
            ap.error("unknown or empty categories: %s" % ",".join(unknown))
        return cats_in_use

    def make_gen(rnd, tap_mac):
        src_mac = mac(a.src_mac) if a.src_mac else tap_mac
        return Gen(rnd, src_mac, mac(a.gw_mac), a.src_ip, a.gw_ip, a.dns_ip, a.world_ip)

    return run(a, make_gen, pick)


if __name__ == "__main__":
    sys.exit(main())
