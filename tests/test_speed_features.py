"""The speed features keep their promises: ack-trim, batches, backpressure, missed."""

import struct
import threading
import time

import msgpack
import pytest

import tiga_cffi
from tiga_cffi import protocol
from tiga_cffi.channel import state_lock


def slot_wake(ipc_dir, name, slot):
    raw = (ipc_dir / f"tiga_{name}_notify").read_bytes()
    return struct.unpack_from("<I", raw, slot * 24 + 20)[0] & 0x7FFFFFFF


def test_write_many_is_one_version_with_consecutive_ids(ipc_dir):
    with tiga_cffi.Channel("batch", ipc_directory=ipc_dir) as ch, \
            tiga_cffi.create_tiga_notification_listener("batch", ipc_directory=ipc_dir) as lst:
        ch.write(b"first")
        v0, w0 = ch.version, slot_wake(ipc_dir, "batch", lst.slot)
        ids = ch.write_many([f"m{i}".encode() for i in range(10)])
        assert ids == list(range(2, 12))
        assert ch.version != v0
        assert (ch.version & 1) != (v0 & 1)  # exactly one buffer switch: one version
        assert slot_wake(ipc_dir, "batch", lst.slot) == w0 + 1  # one wake-up
        r = ch.read(1)
        assert [e.message for e in r.entries] == [f"m{i}".encode() for i in range(10)]
        assert len({e.timestamp for e in r.entries}) == 1


def test_write_many_is_all_or_nothing(ipc_dir):
    with tiga_cffi.Channel("aon", ipc_directory=ipc_dir, capacity=4096) as ch:
        v = ch.version
        with pytest.raises(tiga_cffi.MessageTooLarge):
            ch.write_many([b"x" * 1000] * 5)
        with pytest.raises(tiga_cffi.InvalidType):
            ch.write_many([b"ok", 42])
        assert ch.version == v and ch.read().last_id == 0


def test_write_many_of_every_kind_of_message(ipc_dir):
    """Bytes-like messages go out as one packed buffer; a str among them (a
    publish envelope), memoryviews of wider items and generators take the general
    way: the same entries either way."""
    import array

    wide = array.array("i", [1, 2])
    batches = [
        [b"a", bytearray(b"bc"), memoryview(b"def"), b""],
        [b"a", "text", b"c"],
        [memoryview(wide), b"x"],
        (m for m in [b"g1", b"g2"]),
    ]
    with tiga_cffi.Channel("kinds", ipc_directory=ipc_dir) as ch:
        last = 0
        for batch in batches:
            ids = ch.write_many(batch, media_type="application/test")
            r = ch.read(last)
            last = r.last_id
            assert [e.id for e in r.entries] == ids
            assert {e.media_type for e in r.entries if e.message} <= {
                "application/test", tiga_cffi.protocol.MEDIA_MSGPACK}
        msgs = [e.message for e in ch.read(0).entries]
        assert msgs[:4] == [b"a", b"bc", b"def", b""]
        assert msgs[7] == bytes(wide) and msgs[9:] == [b"g1", b"g2"]
        assert ch.read(0).entries[5].text == "text"
        assert ch.write_many([]) == []
        with pytest.raises(tiga_cffi.InvalidType):
            ch.write_many([b"a"], media_type=b"bytes")
        with pytest.raises(tiga_cffi.InvalidArgument):
            ch.write_many([b"a"], media_type="bad\0type")


def _writes_while_locked(ipc_dir, ch, name, messages):
    """Each message written by its own thread through `ch` while the channel's
    lock is held from outside; returns each thread's id or exception."""
    results = [None] * len(messages)

    def write(i):
        try:
            results[i] = ch.write(messages[i]).id
        except tiga_cffi.TigaError as e:
            results[i] = e

    with state_lock(str(ipc_dir), name) as held:
        assert held
        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(messages))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while ch.pending_writes() < len(messages) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert ch.pending_writes() == len(messages)
    for t in threads:
        t.join(10)
    assert ch.pending_writes() == 0
    return results


def test_concurrent_writes_through_one_channel_share_a_version(ipc_dir):
    with tiga_cffi.Channel("group", ipc_directory=ipc_dir) as ch, \
            tiga_cffi.create_tiga_notification_listener("group", ipc_directory=ipc_dir) as lst:
        ch.write(b"first")
        v0, w0 = ch.version, slot_wake(ipc_dir, "group", lst.slot)
        messages = [f"thread {i}".encode() for i in range(5)]
        ids = _writes_while_locked(ipc_dir, ch, "group", messages)
        assert sorted(ids) == [2, 3, 4, 5, 6]  # each its own id, none repeated
        assert (ch.version & 1) != (v0 & 1)  # one buffer switch
        assert slot_wake(ipc_dir, "group", lst.slot) == w0 + 1  # one wake-up
        entries = {e.id: e for e in ch.read(1).entries}
        assert len({e.timestamp for e in entries.values()}) == 1  # one version
        for i, entry_id in enumerate(ids):
            assert entries[entry_id].message == messages[i]


def test_a_failing_write_in_a_group_fails_alone(ipc_dir):
    with tiga_cffi.Channel("groupbad", ipc_directory=ipc_dir, capacity=4096, min_age=0) as ch:
        messages = [b"a" * 1200, b"b" * 1200, b"x" * 5000, b"c" * 1200]
        results = _writes_while_locked(ipc_dir, ch, "groupbad", messages)
        assert isinstance(results[2], tiga_cffi.MessageTooLarge)
        ok = [r for i, r in enumerate(results) if i != 2]
        assert sorted(ok) == [1, 2, 3]  # the others written, alone (together they do not fit)
        assert ch.read().last_id == 3


def test_ack_trim_never_drops_an_unanswered_request(ipc_dir):
    release = threading.Event()
    holding = threading.Event()

    def handler(method, data, ctx):
        if method == "hold":
            holding.set()
            release.wait(20)
        return data

    with tiga_cffi.start_tiga_server("ack", ipc_dir, handler):
        with tiga_cffi.Client("ack", ipc_directory=ipc_dir, client_id="k", timeout=20) as c:
            for i in range(5):
                assert c.invoke("quick", str(i)) == str(i)
            results = {}
            t1 = threading.Thread(target=lambda: results.update(hold=c.invoke("hold", "h")))
            t1.start()
            assert holding.wait(10)
            t2 = threading.Thread(target=lambda: results.update(after=c.invoke("quick", "a")))
            t2.start()
            time.sleep(0.3)
            # the answered requests may be gone, the unanswered two must still be there
            log = tiga_cffi.tiga_read("ack.req.k", ipc_directory=ipc_dir)
            pending = [e.envelope() for e in log.entries]
            assert [p.data for p in pending][-2:] in (["h", "a"], ["a", "h"])
            assert all(p.data in ("h", "a") or p.data in "01234" for p in pending)
            release.set()
            t1.join(20)
            t2.join(20)
            assert results == {"hold": "h", "after": "a"}
            # "h" waited longer than the ack window, so its response stays for the
            # minimum age (its request might have been trimmed by age, unread); after
            # that, answered requests and read responses go at the next write
            time.sleep(1.1)
            for i in range(50):
                c.invoke("quick", str(i))
            assert len(tiga_cffi.tiga_read("ack.req.k", ipc_directory=ipc_dir).entries) <= 2
            assert len(tiga_cffi.tiga_read("ack.resp.k", ipc_directory=ipc_dir).entries) <= 3


def test_backpressure_waits_for_old_entries(ipc_dir):
    with tiga_cffi.Channel("bp", ipc_directory=ipc_dir, capacity=4096, min_age=0.2) as ch:
        ch.write(b"x" * 3000)
        with pytest.raises(tiga_cffi.ChannelFull):
            ch.write(b"y" * 3000)
    with tiga_cffi.Channel("bp", ipc_directory=ipc_dir, min_age=0.2, write_timeout=5) as ch:
        t0 = time.monotonic()
        assert ch.write(b"y" * 3000).id == 2  # waited for the first to age out
        assert 0.05 < time.monotonic() - t0 < 4
    with tiga_cffi.Channel("bp", ipc_directory=ipc_dir, min_age=10, write_timeout=0.3) as ch:
        t0 = time.monotonic()
        with pytest.raises(tiga_cffi.ChannelFull) as ei:
            ch.write(b"z" * 3000)
        assert "after waiting" in str(ei.value) and time.monotonic() - t0 >= 0.25


def test_slow_reader_is_told_what_it_missed(ipc_dir):
    with tiga_cffi.Channel("slow", ipc_directory=ipc_dir, min_age=0.05) as w, \
            tiga_cffi.Channel("slow", ipc_directory=ipc_dir) as r:
        w.write(b"seen")
        first = r.read()
        assert first.last_id == 1
        for i in range(20):
            w.write(f"old {i}".encode())
        time.sleep(0.2)  # the reader is "descheduled" past the minimum age
        w.write(b"new")
        res = r.read(first.last_id)
        assert res.last_id == 22
        assert res.missed > 0
        assert res.missed + len(res.entries) == 21
        assert res.entries[-1].message == b"new"


def test_compressed_response_is_read(ipc_dir):
    """A C# server compresses responses over 256 bytes: our client decodes them."""
    import gzip

    with tiga_cffi.Client("gz", ipc_directory=ipc_dir, client_id="c", timeout=10) as c:
        # stand in for the server: a listener on the request channel, answer by hand
        with tiga_cffi.create_tiga_notification_listener("gz.req.c", ipc_directory=ipc_dir):
            out = {}
            t = threading.Thread(target=lambda: out.update(r=c.invoke("m", "d")))
            t.start()
            deadline = time.monotonic() + 10
            inv = None
            while inv is None and time.monotonic() < deadline:
                es = tiga_cffi.tiga_read("gz.req.c", ipc_directory=ipc_dir).entries
                inv = es[-1].envelope() if es else None
                time.sleep(0.01)
            body = gzip.compress(protocol.encode_response(inv.id, "z" * 1000, 0))
            tiga_cffi.tiga_write("gz.resp.c", body, ipc_directory=ipc_dir,
                                 media_type=protocol.MEDIA_MSGPACK_GZIP)
            t.join(10)
    assert out["r"] == "z" * 1000


def test_response_of_an_age_trimmed_request_stays_for_the_minimum_age(ipc_dir):
    """A peer client trims requests by age, whether or not it read the responses:
    such a response is not dropped early."""
    with tiga_cffi.start_tiga_server("age", ipc_dir, lambda m, d, c: d):
        with tiga_cffi.create_tiga_notification_listener("age.resp.p", ipc_directory=ipc_dir):
            req = tiga_cffi.Channel("age.req.p", ipc_directory=ipc_dir, min_age=0.3)
            rid = protocol.new_id()
            req.write(protocol.encode_invoke("m", "first", rid), media_type=protocol.MEDIA_MSGPACK)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not tiga_cffi.tiga_read(
                    "age.resp.p", ipc_directory=ipc_dir).entries:
                time.sleep(0.01)
            time.sleep(0.4)  # the request is now older than the peer's minimum age
            rid2 = protocol.new_id()
            req.write(protocol.encode_invoke("m", "second", rid2),
                      media_type=protocol.MEDIA_MSGPACK)  # trims "first" by age
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ids = [e.envelope().id for e in tiga_cffi.tiga_read(
                    "age.resp.p", ipc_directory=ipc_dir).entries]
                if rid2 in ids:
                    break
                time.sleep(0.01)
            assert ids[:2] == [rid, rid2]  # the unread first response is still there
            req.close()


# ---------------------------------------------------------------- delta reads

def _loads(ch):
    """(payloads read whole, payloads read as a delta) by this handle."""
    from tiga_cffi._tiga import ffi, lib

    info = ffi.new("tiga_channel_info *")
    assert ch._handle.call(lib.tiga_channel_info_get, info) == 0
    return info.full_loads, info.delta_loads


BIG = 64 * 1024


def _big(i):
    return bytes([i % 251]) * (BIG - 1) + b"\n"


def test_delta_reads_return_what_full_reads_return(ipc_dir):
    with tiga_cffi.Channel("dr", ipc_directory=ipc_dir, capacity=4 << 20) as w, \
            tiga_cffi.Channel("dr", ipc_directory=ipc_dir) as r:
        last = 0
        for i in range(1, 25):
            w.write(_big(i))
            got = r.read(last)
            assert [(e.id, e.message) for e in got.entries] == [(i, _big(i))]
            last = got.last_id
        full, delta = _loads(r)
        # the first load and the first keeping only one entry are whole reads
        assert full <= 2 and delta >= 22
        # a fresh handle reads the same payload whole: same entries, same bytes
        with tiga_cffi.Channel("dr", ipc_directory=ipc_dir) as fresh:
            a, b = r.read(0), fresh.read(0)
            assert [(e.id, e.timestamp, e.message) for e in a.entries] == \
                [(e.id, e.timestamp, e.message) for e in b.entries]
            assert _loads(fresh) == (1, 0)


def _peer_log(last_id, entries):
    return msgpack.packb([last_id, entries])


def _installed(ipc_dir, name, entries, idx):
    from conftest import install_payload

    install_payload(ipc_dir, name, _peer_log(entries[-1][0], entries), idx=idx)


def _peer_entry(i, message, ts):
    return [i, "0f8fad5b-d9cb-469f-a165-70867728950e", ts, message, None]


@pytest.mark.parametrize("change", ["message", "timestamp"])
def test_delta_read_falls_back_when_a_kept_entry_changed(ipc_dir, change):
    """A payload whose kept entries are not byte for byte the cached ones
    (a peer that rewrote an entry, ids re-issued) is read whole: the reader
    returns the file's bytes, never the cache's."""
    ts = time.monotonic_ns()
    entries = [_peer_entry(i, _big(i), ts + i) for i in range(1, 4)]
    with tiga_cffi.Channel("fb", ipc_directory=ipc_dir) as r:
        _installed(ipc_dir, "fb", entries, 0)
        assert [e.id for e in r.read().entries] == [1, 2, 3]
        changed = list(entries[1])
        if change == "message":  # same id, writer and time: only the checksum tells
            changed[3] = changed[3][:1000] + b"X" + changed[3][1001:]
        else:
            changed[2] += 1
        _installed(ipc_dir, "fb", [changed, entries[2], _peer_entry(4, _big(4), ts + 4)], 1)
        got = r.read(0)
        assert [(e.id, e.message) for e in got.entries] == \
            [(2, changed[3]), (3, _big(3)), (4, _big(4))]
        assert _loads(r) == (2, 0)
        # unchanged kept entries: a delta read
        _installed(ipc_dir, "fb", [entries[2], _peer_entry(4, _big(4), ts + 4),
                                   _peer_entry(5, _big(5), ts + 5)], 0)
        assert [e.id for e in r.read(4).entries] == [5]
        assert _loads(r) == (2, 1)
        assert [e.message for e in r.read(0).entries] == [_big(3), _big(4), _big(5)]


def test_delta_read_of_a_damaged_tail_is_corrupt_and_changes_nothing(ipc_dir):
    ts = time.monotonic_ns()
    entries = [_peer_entry(i, _big(i), ts + i) for i in range(1, 4)]
    with tiga_cffi.Channel("dt", ipc_directory=ipc_dir) as r:
        _installed(ipc_dir, "dt", entries, 0)
        assert r.read().last_id == 3
        good = _peer_log(4, entries[1:] + [_peer_entry(4, _big(4), ts + 4)])
        from conftest import install_payload, make_version, snapshot

        bad = good[:-10] + b"\xff" * 10
        install_payload(ipc_dir, "dt", bad, idx=1, version=make_version(1, good))
        before = snapshot(ipc_dir)
        with pytest.raises(tiga_cffi.ChannelCorrupt):
            r.read(3)
        assert snapshot(ipc_dir) == before
        install_payload(ipc_dir, "dt", good, idx=1)
        assert [e.message for e in r.read(3).entries] == [_big(4)]
