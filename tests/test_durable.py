"""Declared (durable) subscribers: writers keep what they have not read, a dead
one is let go of, readers that declare nothing still get min_age, and the four
files stay what a peer reads."""

import os
import signal
import time

import msgpack
import pytest
from conftest import channel_files, logbook
from peers import CTX
from platforms import not_under_wine, posix_only

import tiga_cffi


def slow_reader(ipc_dir, name, durable, count, pause, ready, out):
    """Subscribe (from the start), read `count` entries with a pause after each."""
    with tiga_cffi.Channel(name, ipc_directory=ipc_dir) as ch, \
            ch.subscribe(last_id=0, durable=durable, missed="count") as sub:
        ready.set()
        got = []
        while len(got) + sub.missed < count:
            e = sub.get(20)
            if e is None:
                break
            got.append(int(e.message))
            time.sleep(pause)
        out.put((got, sub.missed))


def write_fast(ipc_dir, name, count, **opts):
    with tiga_cffi.Channel(name, ipc_directory=ipc_dir, **opts) as ch:
        for i in range(count):
            ch.write(str(i).encode())


@pytest.mark.parametrize("durable", [True, False], ids=["declared", "undeclared"])
def test_a_declared_subscriber_misses_nothing_while_the_capacity_holds(ipc_dir, durable):
    """A writer with min_age 0 keeps only its newest entry for readers that
    declare nothing; a declared subscriber, slower than the writer, still gets
    every entry."""
    ready, out = CTX.Event(), CTX.Queue()
    p = CTX.Process(target=slow_reader,
                    args=(str(ipc_dir), "s", durable, 300, 0.002, ready, out), daemon=True)
    p.start()
    try:
        assert ready.wait(30)
        write_fast(ipc_dir, "s", 300, min_age=0, read_min_age=0, write_timeout=30)
        got, missed = out.get(timeout=60)
    finally:
        p.kill()
        p.join(10)
    if durable:
        assert got == list(range(300)) and missed == 0
    else:  # the same writer, a reader that declared nothing: it is told what it missed
        assert missed > 0 and len(got) + missed == 300


def subscribe_and_hold(ipc_dir, name, ready):
    with tiga_cffi.Channel(name, ipc_directory=ipc_dir) as ch:
        sub = ch.subscribe(last_id=0, durable=True)
        ready.set()
        time.sleep(3600)
        sub.close()


def test_a_killed_subscriber_is_let_go_of_and_the_writer_proceeds(ipc_dir):
    tiga_cffi.Channel("k", ipc_directory=ipc_dir, capacity=4096).close()
    ready = CTX.Event()
    p = CTX.Process(target=subscribe_and_hold, args=(str(ipc_dir), "k", ready), daemon=True)
    p.start()
    try:
        assert ready.wait(30)
        with tiga_cffi.Channel("k", ipc_directory=ipc_dir, capacity=4096, min_age=0,
                               read_min_age=0) as ch:
            assert ch.info().subscribers == 1
            with pytest.raises(tiga_cffi.ChannelFull) as ei:
                for _ in range(100):
                    ch.write(b"x" * 500)  # it reads nothing: the capacity fills
            assert "declared subscriber" in str(ei.value)
            p.kill()
            p.join(10)
            ch.write(b"x" * 500)  # the dead one is let go of at once
            info = ch.info()
            assert info.subscribers == 0 and info.retained == 1
    finally:
        p.kill()
        p.join(10)


def test_a_full_channel_waits_for_the_subscriber_within_write_timeout(ipc_dir):
    with tiga_cffi.Channel("w", ipc_directory=ipc_dir, capacity=4096, min_age=0,
                           read_min_age=0, write_timeout=5) as ch, \
            ch.subscribe(last_id=0, durable=True) as sub:
        ids = []
        t0 = time.monotonic()
        for _ in range(7):
            ids.append(ch.write(b"x" * 500).id)
        assert time.monotonic() - t0 < 1  # room for all so far
        import threading

        t = threading.Timer(0.3, sub.poll)  # the subscriber reads 0.3 s from now
        t.start()
        t0 = time.monotonic()
        ch.write(b"x" * 500)  # full: waits for it, then goes on
        assert 0.2 < time.monotonic() - t0 < 4
        t.join()
        assert sub.missed == 0


def test_an_undeclared_reader_still_gets_min_age(ipc_dir):
    with tiga_cffi.Channel("u", ipc_directory=ipc_dir, min_age=60) as ch, \
            ch.subscribe(last_id=0, durable=True) as sub:
        for i in range(5):
            ch.write(str(i).encode())
        assert [e.message for e in sub.poll()] == [b"0", b"1", b"2", b"3", b"4"]
        ch.write(b"5")  # every entry read by the declared subscriber: still kept
        r = tiga_cffi.tiga_read("u", ipc_directory=ipc_dir)
        assert [e.message for e in r.entries] == [str(i).encode() for i in range(6)]
        assert r.missed == 0


def test_the_four_files_are_what_a_peer_reads(ipc_dir):
    """The subscribers file is a fifth file; the four are written as without it,
    and decode with msgpack (the peers' reading) to the same logbook."""
    def run(name, declared):
        with tiga_cffi.Channel(name, ipc_directory=ipc_dir, min_age=60) as ch:
            sub = ch.subscribe(last_id=0, durable=True) if declared else None
            for i in range(4):
                ch.write(f"m{i}".encode(), media_type="text/plain")
                if sub is not None:
                    sub.poll()
            if sub is not None:
                sub.close()
        state, d0, d1, _ = channel_files(ipc_dir, name)
        version = int.from_bytes(state.read_bytes()[:8], "little")
        data = (d1 if version & 1 else d0).read_bytes()[:(version >> 1) & ((1 << 39) - 1)]
        schema, last_id, entries = logbook(msgpack.unpackb(data))
        return schema, last_id, [(e[0], e[3], e[4]) for e in entries]

    assert run("plain", False) == run("declared", True)
    assert (ipc_dir / "tiga_declared_subs").stat().st_size == tiga_cffi._lib.TIGA_SUBS_SIZE
    assert not (ipc_dir / "tiga_plain_subs").exists()


def test_hostile_subscribers_files(ipc_dir):
    with tiga_cffi.Channel("h", ipc_directory=ipc_dir, min_age=0, read_min_age=0) as ch:
        (ipc_dir / "tiga_h_subs").write_bytes(b"\xff" * 8256)  # not ours
        ch.write(b"a")
        ch.write(b"b")  # the writer ignores it: min_age decides
        assert ch.info().retained == 1
        with pytest.raises(tiga_cffi.ChannelCorrupt):
            ch.subscribe(durable=True)
        (ipc_dir / "tiga_h_subs").write_bytes(b"TIGASUB1")  # short
        with pytest.raises(tiga_cffi.ChannelCorrupt):
            ch.subscribe(durable=True)
        ch.write(b"c")
        assert ch.info().retained == 1


@not_under_wine("wine follows the links it makes, whatever FILE_FLAG_OPEN_REPARSE_POINT says")
def test_a_linked_subscribers_file_is_refused(ipc_dir):
    with tiga_cffi.Channel("h", ipc_directory=ipc_dir) as ch:
        os.symlink(str(ipc_dir / "elsewhere"), str(ipc_dir / "tiga_h_subs"))
        with pytest.raises(tiga_cffi.TigaOSError):
            ch.subscribe(durable=True)
        assert not (ipc_dir / "elsewhere").exists()


@posix_only("SIGSTOP")
def test_a_stopped_subscriber_misses_nothing_once_it_resumes(ipc_dir):
    """Four declared subscribers; one is stopped for 1 s while the writer goes on:
    the others keep reading, and the stopped one gets everything after."""
    count = 3000
    readers = []
    try:
        for _ in range(4):
            ready, out = CTX.Event(), CTX.Queue()
            p = CTX.Process(target=slow_reader,
                            args=(str(ipc_dir), "st", True, count, 0, ready, out), daemon=True)
            p.start()
            assert ready.wait(30)
            readers.append((p, out))
        with tiga_cffi.Channel("st", ipc_directory=ipc_dir, capacity=4 << 20, min_age=0,
                               read_min_age=0, write_timeout=30) as ch:
            stopped = readers[0][0]
            for i in range(count):
                if i == 500:
                    os.kill(stopped.pid, signal.SIGSTOP)
                    t_stop = time.monotonic()
                if i > 500 and t_stop and time.monotonic() - t_stop > 1.0:
                    os.kill(stopped.pid, signal.SIGCONT)
                    t_stop = 0
                ch.write(str(i).encode())
                time.sleep(0.0005)
            if t_stop:
                os.kill(stopped.pid, signal.SIGCONT)
        for _p, out in readers:
            got, missed = out.get(timeout=60)
            assert got == list(range(count)) and missed == 0
    finally:
        for p, _ in readers:
            if p.is_alive():
                os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.join(10)


def big_reader(ipc_dir, name, count, ready, out):
    """A declared subscriber of `count` big entries, each checked by its id."""
    with tiga_cffi.Channel(name, ipc_directory=ipc_dir) as ch, \
            ch.subscribe(last_id=0, durable=True, missed="count") as sub:
        ready.set()
        ids, bad = [], 0
        while len(ids) + sub.missed < count:
            e = sub.get(20)
            if e is None:
                break
            ids.append(e.id)
            bad += e.message != bytes([e.id % 256]) * len(e.message)
        out.put((ids, sub.missed, bad))


def start_big_reader(ipc_dir, name, count):
    """The channel made at 64 MiB, then a big_reader process, subscribed."""
    tiga_cffi.Channel(name, ipc_directory=ipc_dir, capacity=64 << 20).close()
    ready, out = CTX.Event(), CTX.Queue()
    p = CTX.Process(target=big_reader, args=(str(ipc_dir), name, count, ready, out),
                    daemon=True)
    p.start()
    return p, ready, out


def test_a_paced_writer_loses_nothing(ipc_dir):
    """Big entries to a declared subscriber that keeps reading: the writer waits
    for it (pacing, on by default) and it gets every entry, intact and in order."""
    count, size = 60, 512 << 10
    p, ready, out = start_big_reader(ipc_dir, "pw", count)
    try:
        assert ready.wait(30)
        with tiga_cffi.Channel("pw", ipc_directory=ipc_dir, capacity=64 << 20, min_age=0,
                               read_min_age=0, write_timeout=30) as ch:
            for i in range(1, count + 1):
                assert ch.write(bytes([i % 256]) * size).id == i
        ids, missed, bad = out.get(timeout=60)
    finally:
        p.kill()
        p.join(10)
    assert ids == list(range(1, count + 1)) and missed == 0 and bad == 0


@posix_only("SIGSTOP")
def test_a_stopped_subscriber_is_not_waited_for(ipc_dir):
    """A declared subscriber stopped with big entries unread: writes with a pace
    of 1 s go on at once (its position does not move), and once it resumes it
    gets everything."""
    count, size = 30, 300 << 10
    p, ready, out = start_big_reader(ipc_dir, "ps", count)
    try:
        assert ready.wait(30)
        os.kill(p.pid, signal.SIGSTOP)
        with tiga_cffi.Channel("ps", ipc_directory=ipc_dir, capacity=64 << 20, min_age=0,
                               read_min_age=0, pace=1.0) as ch:
            t0 = time.monotonic()
            for i in range(1, count + 1):
                ch.write(bytes([i % 256]) * size)
            elapsed = time.monotonic() - t0
        os.kill(p.pid, signal.SIGCONT)
        ids, missed, bad = out.get(timeout=60)
    finally:
        os.kill(p.pid, signal.SIGCONT)
        p.kill()
        p.join(10)
    assert elapsed < 5.0  # 30 waits of the whole pace would take 30 s
    assert ids == list(range(1, count + 1)) and missed == 0 and bad == 0


@pytest.mark.parametrize("bad, exc", [(-1, tiga_cffi.InvalidArgument),
                                      (float("nan"), tiga_cffi.InvalidArgument),
                                      (float("inf"), tiga_cffi.InvalidArgument),
                                      ("1", tiga_cffi.InvalidType)])
def test_pace_is_checked(ipc_dir, bad, exc):
    with pytest.raises(exc):
        tiga_cffi.Channel("pc", ipc_directory=ipc_dir, pace=bad)
    tiga_cffi.Channel("pc", ipc_directory=ipc_dir, pace=0).close()  # never waits
