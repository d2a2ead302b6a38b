"""What malformed_frames.py and malformed_frames6.py share: the checksum and MAC helpers, and the
sender that writes a generator's frames into the tap through an AF_PACKET socket and prints the
one JSON line the e2e tests read: {"sent", "attempted", "errors", "categories", "seed"}.
"""
import json
import os
import random
import socket
import struct
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def run(a, make_gen, pick_categories) -> int:
    """Send a.count frames out of a.iface, pausing 1 ms after every a.pace of them.

    a: the parsed command line (iface, count, seed, pace). make_gen(rnd, tap_mac) builds the
    generator; its methods named by pick_categories() make the frames: each category once, in
    order, then drawn at random. pick_categories() may end the script with a usage error; it is
    called once the socket is open, as the scripts always did.
    """
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    rnd = random.Random(seed)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    # /sys may belong to another netns under nsenter; ask the socket for the tap's MAC instead.
    g = make_gen(rnd, s.getsockname()[4][:6])
    cats_in_use = pick_categories()
    sent, errors, cats = 0, {}, {}
    for i in range(a.count):
        cat = cats_in_use[i % len(cats_in_use)] if i < len(cats_in_use) else rnd.choice(cats_in_use)
        frame = getattr(g, cat)()
        cats[cat] = cats.get(cat, 0) + 1
        try:
            s.send(frame)
            sent += 1
        except OSError as e:
            key = "%s:%s" % (cat, e.errno)
            errors[key] = errors.get(key, 0) + 1
        if a.pace and i % a.pace == a.pace - 1:
            time.sleep(0.001)
    s.close()
    print(json.dumps({"sent": sent, "attempted": a.count, "errors": errors, "categories": cats, "seed": seed}))
    return 0
