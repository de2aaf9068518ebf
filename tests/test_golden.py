"""Payloads built independently with the msgpack package, as the peers write them,
must read correctly; what we write must decode with msgpack to PROTOCOL section 3."""

import struct
import time
import uuid

import msgpack
import pytest
from conftest import header_len, install_payload, logbook

import tiga_cffi
from tiga_cffi import protocol

INSTANCE = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
GUID = uuid.UUID(INSTANCE)


def dotnet_bytes(g):
    """Guid.ToByteArray order: the first three groups little-endian."""
    return g.bytes_le


def now_ns():
    return time.monotonic_ns()  # CLOCK_MONOTONIC on Linux, the writers' clock


def entry(i, message, media="text/plain", instance=INSTANCE, ts=None):
    return [i, instance, now_ns() if ts is None else ts, message, media]


@pytest.fixture
def chan(ipc_dir):
    with tiga_cffi.Channel("golden", ipc_directory=ipc_dir) as ch:
        yield ch


def test_plain(ipc_dir, chan):
    payload = msgpack.packb([2, [entry(1, b"one"), entry(2, b"two", None)]])
    install_payload(ipc_dir, "golden", payload, idx=1)
    r = chan.read()
    assert r.last_id == 2 and r.missed == 0
    assert [(e.id, e.message, e.media_type) for e in r.entries] == [
        (1, b"one", "text/plain"),
        (2, b"two", None),
    ]
    assert r.entries[0].instance == INSTANCE and r.entries[0].timestamp > 0


def test_two_entry_plain_is_not_an_envelope(ipc_dir, chan):
    payload = msgpack.packb([7, [entry(6, b"a"), entry(7, b"b")]])
    install_payload(ipc_dir, "golden", payload)
    r = chan.read()
    assert r.last_id == 7 and [e.id for e in r.entries] == [6, 7] and r.missed == 5
    chan.write(b"c")
    raw = msgpack.unpackb(chan_payload(ipc_dir, "golden"))
    assert raw[0] == 8 and len(raw[1]) == 3  # still plain, ids go on


def chan_payload(ipc_dir, name):
    state = (ipc_dir / f"tiga_{name}_state").read_bytes()
    (v,) = struct.unpack("<Q", state[:8])
    idx, size = v & 1, (v >> 1) & ((1 << 39) - 1)
    return (ipc_dir / f"tiga_{name}_data_{idx}").read_bytes()[:size]


def test_enveloped_keeps_schema(ipc_dir, chan):
    payload = msgpack.packb([3, [1, [entry(1, b"x")]]])
    install_payload(ipc_dir, "golden", payload)
    r = chan.read()
    assert r.last_id == 1 and r.entries[0].message == b"x"
    assert chan.info().schema_version == 3
    assert chan.write(b"y").id == 2
    raw = msgpack.unpackb(chan_payload(ipc_dir, "golden"))
    assert raw[0] == 3 and raw[1][0] == 2 and len(raw[1][1]) == 2


def test_four_element_entries(ipc_dir, chan):
    payload = msgpack.packb([1, [[1, INSTANCE, 5, b"four"]]])
    install_payload(ipc_dir, "golden", payload)
    (e,) = chan.read().entries
    assert e.message == b"four" and e.media_type is None


@pytest.mark.parametrize(
    "instance",
    [
        INSTANCE.upper(),
        "{" + INSTANCE + "}",
        INSTANCE.replace("-", ""),
        dotnet_bytes(GUID),
        msgpack.ExtType(1, dotnet_bytes(GUID)),
    ],
    ids=["upper", "braces", "hex32", "bin16", "ext16"],
)
def test_instance_forms(ipc_dir, chan, instance):
    payload = msgpack.packb([1, [entry(1, b"m", instance=instance)]], use_bin_type=True)
    install_payload(ipc_dir, "golden", payload)
    assert chan.read().entries[0].instance == INSTANCE


def pack_int(v, width):
    fmt = {1: (0xCC, ">B"), 2: (0xCD, ">H"), 4: (0xCE, ">I"), 8: (0xCF, ">Q")}
    sfmt = {1: (0xD0, ">b"), 2: (0xD1, ">h"), 4: (0xD2, ">i"), 8: (0xD3, ">q")}
    tag, f = (sfmt if v < 0 or width < 0 else fmt)[abs(width)]
    return bytes([tag]) + struct.pack(f, v)


@pytest.mark.parametrize("width", [1, 2, 4, 8, -1, -2, -4, -8])
def test_integer_widths(ipc_dir, chan, width):
    i = lambda v: pack_int(v, width)  # noqa: E731
    body = (
        b"\x92" + i(9) + b"\x91\x95" + i(9) + msgpack.packb(INSTANCE) + i(100)
        + msgpack.packb(b"w") + b"\xc0"
    )
    install_payload(ipc_dir, "golden", body)
    r = chan.read()
    assert r.last_id == 9 and r.entries[0].id == 9 and r.entries[0].timestamp == 100


def test_big_timestamp_and_negative(ipc_dir, chan):
    payload = msgpack.packb([2, [entry(1, b"a", ts=-5), entry(2, b"b", ts=2**62)]])
    install_payload(ipc_dir, "golden", payload)
    assert [e.timestamp for e in chan.read().entries] == [-5, 2**62]


def test_what_we_write_has_the_protocol_shape(ipc_dir, chan):
    chan.write("text message")
    chan.write(b"\x00\x01bytes", media_type="application/octet-stream")
    chan.write(b"")
    raw = msgpack.unpackb(chan_payload(ipc_dir, "golden"), raw=False)
    # the second write made a log of two entries: enveloped (schema 1) from then on
    schema, last_id, entries = logbook(raw)
    assert schema == 1 and raw[0] == 1 and raw[1][0] == 3
    assert last_id == 3 and len(entries) == 3
    for n, (eid, inst, ts, msg, _media) in enumerate(entries, 1):
        assert eid == n
        assert isinstance(inst, str) and len(inst) == 36 and inst == str(uuid.UUID(inst))
        assert isinstance(ts, int) and ts > 0
        assert isinstance(msg, bytes)
    assert entries[0][4] == "application/x-msgpack"
    env = msgpack.unpackb(entries[0][3], raw=False)
    assert env[1] == 0 and env[2] == "text message" and str(uuid.UUID(env[0])) == env[0]
    assert entries[1][3] == b"\x00\x01bytes" and entries[1][4] == "application/octet-stream"
    assert entries[2][4] is None
    # the version word matches PROTOCOL section 2
    state = (ipc_dir / "tiga_golden_state").read_bytes()
    (v,) = struct.unpack("<Q", state[:8])
    payload = chan_payload(ipc_dir, "golden")
    assert v >> 40 == tiga_cffi.wyhash(payload) & 0xFFFFFF
    assert v & 1 == 0  # third write lands in buffer 0 again (0, 1, 0)


def test_publish_text_roundtrip(ipc_dir):
    tiga_cffi.tiga_write("pub", "héllo", ipc_directory=ipc_dir)
    (e,) = tiga_cffi.tiga_read("pub", ipc_directory=ipc_dir).entries
    assert e.text == "héllo"
    env = e.envelope()
    assert isinstance(env, protocol.Publish) and env.data == "héllo"


def test_write_result_and_read_after(ipc_dir):
    r1 = tiga_cffi.tiga_write("ids", b"a", ipc_directory=ipc_dir)
    r2 = tiga_cffi.tiga_write("ids", b"b", ipc_directory=ipc_dir)
    assert (r1.id, r2.id) == (1, 2) and str(r2) == "ok id=2"
    r = tiga_cffi.tiga_read("ids", ipc_directory=ipc_dir, last_id=1)
    assert [e.message for e in r.entries] == [b"b"] and r.last_id == 2
    assert tiga_cffi.tiga_read("ids", ipc_directory=ipc_dir, last_id=2).entries == []


def test_old_entries_are_trimmed_on_write(ipc_dir, chan):
    # Trimming is lazy (docs/PROTOCOL-NOTES.md); a dead run at least as big as
    # the live entries goes at the next write. Our own entries are aged by their
    # timestamps (our clock).
    chan.set_min_age(0.05)
    chan.write(b"an old, long entry of ours")
    time.sleep(0.1)
    chan.write(b"new")
    schema, last_id, entries = logbook(msgpack.unpackb(chan_payload(ipc_dir, "golden")))
    assert last_id == 2 and [e[0] for e in entries] == [2]
    r = chan.read()
    assert r.missed == 1 and [e.id for e in r.entries] == [2]


def test_a_peers_entries_are_aged_from_when_we_first_saw_them(ipc_dir, chan):
    """Another writer's clock is not ours (the Node addon stamps nanoseconds since
    its own start): its entries are kept min_age from when this writer first saw
    them, whatever their timestamps say (PROTOCOL-NOTES, foreign clocks)."""
    for name, ts in (("ancient", 1), ("future", now_ns() + 10**15)):
        with tiga_cffi.Channel(name, ipc_directory=ipc_dir, min_age=0.2) as ch:
            payload = msgpack.packb([2, [entry(1, b"peer one", ts=ts), entry(2, b"peer two")]])
            install_payload(ipc_dir, name, payload)
            ch.write(b"ours")  # first sight of the peer's entries: nothing goes
            _, _, entries = logbook(msgpack.unpackb(chan_payload(ipc_dir, name)))
            assert [e[0] for e in entries] == [1, 2, 3], name
            time.sleep(0.3)
            ch.write(b"later")
            _, _, entries = logbook(msgpack.unpackb(chan_payload(ipc_dir, name)))
            assert [e[0] for e in entries] == [4], name  # all older than min_age by then


def test_delta_writes_give_the_same_bytes_as_full_ones(ipc_dir):
    """Appends that write only the changed parts of a buffer leave exactly the
    payload a full re-encoding would give, whichever handle writes, with trims."""
    a = tiga_cffi.Channel("delta", ipc_directory=ipc_dir, min_age=3600)
    b = tiga_cffi.Channel("delta", ipc_directory=ipc_dir, min_age=3600)
    expected = []
    for i in range(60):
        w = b if i % 7 == 3 else a
        if i == 40:
            w.set_min_age(0)  # this write trims everything before it
            expected = []
        elif i == 41:
            w.set_min_age(3600)
        msg = bytes([i]) * (i * 13 % 300)
        w.write(msg)
        expected.append(msg)
        payload = chan_payload(ipc_dir, "delta")
        schema, last_id, entries = logbook(msgpack.unpackb(payload, raw=False))
        assert last_id == i + 1
        assert [e[3] for e in entries] == expected
        assert payload[header_len(schema):] == b"".join(
            msgpack.packb(e, use_bin_type=True) for e in entries)
    a.close()
    b.close()
