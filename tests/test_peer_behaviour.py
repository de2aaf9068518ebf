"""The peers as they really behave (issue 13): each test plays the Node addon's Linux
build (tests/nodepeer.py) against our code, from the facts PROTOCOL.md records."""

import struct
import threading
import time

import msgpack
import pytest
from conftest import channel_files, install_payload, logbook
from nodepeer import MIB, NodePeer, PollingServer, parse_logbook

import tiga_cffi
from tiga_cffi import ChannelCorrupt


@pytest.fixture
def node(ipc_dir):
    return NodePeer(ipc_dir)


def payload_of(ipc_dir, name):
    state = channel_files(ipc_dir, name)[0].read_bytes()
    (v,) = struct.unpack("<Q", state[:8])
    idx, size = v & 1, (v >> 1) & ((1 << 39) - 1)
    return channel_files(ipc_dir, name)[1 + idx].read_bytes()[:size]


# -- 1. capacity growth under an open handle

def test_an_open_handle_follows_data_files_a_peer_grew(ipc_dir, node):
    with tiga_cffi.Channel("grow", ipc_directory=ipc_dir, capacity=262144) as ch:
        assert ch.write(b"small").id == 1 and ch.capacity == 262144
        big = bytes(range(256)) * 2400  # 600 KiB: fits only in the grown files
        assert node.open("grow") == MIB
        assert node.write("grow", big) == 2
        r = ch.read()  # the same handle, opened before the files grew
        assert [e.message for e in r.entries] == [b"small", big]
        assert ch.capacity == MIB
        # and its writes use the room too
        assert ch.write(b"y" * 300_000).id == 3
        assert [len(e.message) for e in ch.read(2).entries] == [300_000]
    with tiga_cffi.Channel("grow", ipc_directory=ipc_dir) as fresh:
        assert fresh.read(2).entries[0].message == b"y" * 300_000


def test_a_writer_handle_uses_room_a_peer_added(ipc_dir, node):
    with tiga_cffi.Channel("room", ipc_directory=ipc_dir, capacity=65536) as ch:
        ch.write(b"a")
        node.open("room")  # grown to 1 MiB, nothing written
        assert ch.write(b"b" * 200_000).id == 2  # the first write that needs the room
        assert ch.capacity == MIB


def test_a_size_beyond_the_files_stays_corrupt(ipc_dir, node):
    with tiga_cffi.Channel("liar", ipc_directory=ipc_dir, capacity=65536) as ch:
        ch.write(b"a")
        node.open("liar")
        payload = payload_of(ipc_dir, "liar")
        word = 1 | ((2 * MIB) << 1)  # claims 2 MiB, the files hold 1 MiB
        install_payload(ipc_dir, "liar", payload, idx=1, version=word)
        with pytest.raises(ChannelCorrupt, match="data files hold 1048576"):
            ch.read()
        assert ch.capacity == MIB  # it looked, grew to what is there, and refused


# -- 2. the two-entry misread

@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_every_log_we_write_reads_the_same_under_both_envelope_rules(ipc_dir, node, count):
    with tiga_cffi.Channel("both", ipc_directory=ipc_dir) as ch:
        for i in range(count):
            ch.write(f"m{i}".encode())
            payload = payload_of(ipc_dir, "both")
            # C# rule (an envelope only if [int, [int, array]]) and Node rule
            _, cs_last, cs_entries = logbook(msgpack.unpackb(payload, raw=False))
            book, _ = parse_logbook(payload)
            assert book is not None, f"the Node reader sees nothing after {i + 1} entries"
            node_last, node_entries = book
            assert cs_last == node_last == i + 1
            assert [e[3] for e in cs_entries] == [e[3] for e in node_entries] == [
                f"m{k}".encode() for k in range(i + 1)]
    # and a Node writer after us goes on with the ids
    assert node.write("both", b"node") == count + 1


def test_a_node_client_invokes_our_server_again_and_again(ipc_dir, node):
    srv = tiga_cffi.start_tiga_server("svc", ipc_dir, lambda m, d, ctx: f"{m}:{d}")
    try:
        for i in range(5):
            assert node.invoke("svc", "node-1", "echo", str(i), timeout=10) == f"echo:{i}"
    finally:
        srv.close()


def test_a_node_reader_follows_a_response_log_we_write(ipc_dir, node):
    with tiga_cffi.Channel("feed", ipc_directory=ipc_dir) as ch:
        seen = []
        last = 0
        for i in range(6):
            ch.write(f"e{i}".encode())
            new = node.read("feed", last)
            assert new, f"the Node reader missed entry {i + 1}"
            last = new[-1][0]
            seen += [e[3] for e in new]
        assert seen == [f"e{i}".encode() for i in range(6)]


# -- 3. a server with no listener slot

def test_our_client_invokes_a_server_that_polls_without_a_slot(ipc_dir, node):
    with PollingServer(node, "poll", lambda m, d: f"node:{d}") as srv, \
            tiga_cffi.Client("poll", ipc_directory=ipc_dir, client_id="py-1", timeout=10) as c:
        assert c.invoke("echo", "one") == "node:one"
        assert c._ep._slotless  # remembered: the next invokes skip the grace
        t0 = time.monotonic()
        for i in range(5):
            assert c.invoke("echo", str(i)) == f"node:{i}"
        assert srv.answered == 6
        # no grace wait per call once it knows (5 calls well under 5 graces + polls)
        assert time.monotonic() - t0 < 5 * 0.075 + 2.0


def test_server_not_ready_when_no_listener_and_no_answer(ipc_dir):
    with tiga_cffi.Client("nobody", ipc_directory=ipc_dir, client_id="k", timeout=0.4) as c:
        with pytest.raises(tiga_cffi.ServerNotReady, match="no live listener.*nothing answered"):
            c.invoke("echo", "x")


def test_a_silent_server_with_a_listener_is_a_timeout(ipc_dir):
    """A listener is there but nobody answers: Timeout, not ServerNotReady."""
    with tiga_cffi.create_tiga_notification_listener("mute.req.k", ipc_directory=ipc_dir), \
            tiga_cffi.Client("mute", ipc_directory=ipc_dir, client_id="k", timeout=0.3) as c:
        with pytest.raises(tiga_cffi.Timeout) as ei:
            c.invoke("echo", "x")
        assert not isinstance(ei.value, tiga_cffi.ServerNotReady)


def test_our_server_still_answers_without_the_grace(ipc_dir):
    """Against our own server (it registers its listener) nothing waits."""
    srv = tiga_cffi.start_tiga_server("own", ipc_dir, lambda m, d, ctx: d)
    try:
        with tiga_cffi.Client("own", ipc_directory=ipc_dir, client_id="c", timeout=10) as c:
            assert c.invoke("echo", "warm") == "warm"
            assert not c._ep._no_listener and not c._ep._slotless
    finally:
        srv.close()


# -- 4. a log whose ids went back

def test_a_reader_sees_a_reset_and_reads_the_new_log(ipc_dir, node):
    with tiga_cffi.Channel("back", ipc_directory=ipc_dir) as ch:
        for i in range(5):
            ch.write(f"old{i}".encode())
        r = ch.read(0)
        assert r.last_id == 5 and not r.reset
        node.reset("back")  # the addon's answer to a log it could not read
        node.write("back", b"new1")
        node.write("back", b"new2")
        r = ch.read(5)
        assert r.reset and r.last_id == 2
        assert [(e.id, e.message) for e in r.entries] == [(1, b"new1"), (2, b"new2")]
        assert not ch.read(2).reset  # read on from the new position
        assert ch.info().resets == 1


def test_our_writer_never_reissues_an_id_after_a_reset(ipc_dir, node):
    with tiga_cffi.Channel("ids", ipc_directory=ipc_dir) as ch:
        ids = [ch.write(b"a").id for _ in range(4)]
        node.reset("ids")
        node.write("ids", b"peer")  # id 1 again
        ids.append(ch.write(b"b").id)
        assert ids == [1, 2, 3, 4, 5]  # above everything this handle has seen
        r = ch.read(0)
        assert [e.id for e in r.entries] == [1, 5] and r.last_id == 5
        assert ch.info().high_id == 5


def test_our_client_gets_every_answer_of_a_node_server_whose_log_went_back(ipc_dir, node):
    # The addon's server writes its responses with its own writes: after two plain
    # entries it misreads its own log and restarts ids at 1 (PROTOCOL section 3).
    with PollingServer(node, "nsv", lambda m, d: f"r{d}") as srv, \
            tiga_cffi.Client("nsv", ipc_directory=ipc_dir, client_id="k", timeout=5) as c:
        for i in range(6):
            assert c.invoke("echo", str(i)) == f"r{i}"
        assert srv.answered == 6
    with tiga_cffi.Channel("nsv.resp.k", ipc_directory=ipc_dir) as ch:
        assert ch.read().last_id < 6  # the Node server's log did go back


def test_our_server_answers_a_client_whose_request_log_went_back(ipc_dir, node):
    srv = tiga_cffi.start_tiga_server("rs", ipc_dir, lambda m, d, ctx: f"ok:{d}")
    try:
        assert node.invoke("rs", "n1", "echo", "a", timeout=10) == "ok:a"
        assert node.invoke("rs", "n1", "echo", "b", timeout=10) == "ok:b"
        node.reset("rs.req.n1")  # its request log restarts at 1
        for d in "cde":
            assert node.invoke("rs", "n1", "echo", d, timeout=10) == f"ok:{d}"
    finally:
        srv.close()


# -- 5. foreign clocks

def test_a_fresh_entry_with_a_foreign_clock_is_not_trimmed_at_once(ipc_dir, node):
    with tiga_cffi.Channel("clock", ipc_directory=ipc_dir, min_age=0.3) as ch:
        ch.write(b"ours")
        time.sleep(0.4)  # ours is old now
        node.write("clock", b"theirs")  # stamped with ns since the peer started: tiny
        assert ch.read(1).entries[0].timestamp < 10**10
        ch.write(b"ours again")
        ids = [e.id for e in ch.read().entries]
        assert 2 in ids, "the peer's entry was trimmed before anyone read it"
        time.sleep(0.4)
        ch.write(b"later")  # min_age after we first saw it: now it may go
        assert [e.id for e in ch.read().entries] == [4]


def test_undeclared_writers_in_one_process_still_trim_their_own(ipc_dir):
    """Our own entries keep being aged by their timestamps (no extra retention)."""
    with tiga_cffi.Channel("own", ipc_directory=ipc_dir, min_age=0.05) as ch:
        for _ in range(3):
            ch.write(b"x" * 100)
        time.sleep(0.1)
        ch.write(b"y")
        assert [e.id for e in ch.read().entries] == [4]


def test_peer_threads_and_our_writer_together_lose_nothing(ipc_dir, node):
    """A Node writer (no lock: PROTOCOL section 3) races nothing here, but our reads
    and writes between its writes must keep every id unique and readable."""
    stop = threading.Event()
    with tiga_cffi.Channel("mix", ipc_directory=ipc_dir, min_age=5) as ch:
        ids = []
        for i in range(20):
            if i % 3 == 0:
                ids.append(node.write("mix", f"n{i}".encode()))
            else:
                ids.append(ch.write(f"p{i}".encode()).id)
        stop.set()
        r = ch.read()
        got = [e.id for e in r.entries]
        assert len(set(got)) == len(got) and sorted(got) == got
        assert len(got) == 20
