"""Write the fuzzer's seed corpus (csrc/fuzz/corpus): 16 bytes of choices (flags, the
id to read after, reader counters, a cut, the slot bytes) followed by a payload."""

import os
import struct
import uuid

import msgpack

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
G = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
RID = "00000000-0000-4000-8000-000000000000"


def entry(i, msg, media=None, inst=G, ts=1000):
    return [i, inst, ts, msg, media]


def choices(flags=0, after=0, counters=0, cut=0, slots=0):
    return bytes([flags]) + struct.pack(">q", after) + struct.pack("<I", counters) + \
        bytes([cut]) + struct.pack("<H", slots)


def pack(v):
    return msgpack.packb(v, use_bin_type=True)


seeds = {
    "empty": choices() + pack([0, []]),
    "plain": choices(after=1) + pack([3, [entry(1, b"a"), entry(2, b"bb", "text/plain"),
                                          entry(3, b"")]]),
    "enveloped": choices(flags=4) + pack([1, [2, [entry(1, b"x"), entry(2, b"y")]]]),
    "four": choices(after=5) + pack([9, [[8, G, 5, b"four"], entry(9, b"five")]]),
    "dotnet": choices(flags=8) + pack([1, [[1, msgpack.ExtType(3, uuid.UUID(G).bytes_le), 1,
                                             b"e", None]]]),
    "invoke": choices(flags=16) + pack([1, [entry(1, pack([RID, 1, "echo", "hi"]),
                                                  "application/x-msgpack")]]),
    "response": choices() + pack([1, [entry(1, pack([RID, 2, "ok", 0]),
                                             "application/x-msgpack")]]),
    "top": choices(after=2**63 - 1) + pack([2**63 - 1, [entry(2**63 - 1, b"t")]]),
    "counters": choices(counters=0x7FFFFFFF, slots=48) + pack([1, [entry(1, b"c")]]),
    "cut": choices(flags=2, cut=1) + pack([1, [entry(1, b"z" * 600)]]),
}
os.makedirs(HERE, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
