"""Hostile files, hostile users, full disks (issue 14): every number from a file is
range-checked, no allocation follows a file's size, a full disk is a clear error,
links and foreign files are refused, and what we create is private."""

import errno
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import msgpack
import pytest
from conftest import channel_files, install_payload, snapshot
from platforms import not_under_wine, posix_only

import tiga_cffi
from tiga_cffi import ChannelCorrupt, InvalidArgument, TigaOSError

INSTANCE = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def entry(i, message=b"m", ts=1):
    return [i, INSTANCE, ts, message, None]


def raw_log(last_id, ids):
    """A logbook with explicit 64-bit widths, so extreme values are written as given."""
    def i64(v):
        return b"\xd3" + struct.pack(">q", v)

    body = b"\x92" + i64(last_id) + bytes([0x90 | len(ids)])
    for i in ids:
        body += (b"\x95" + i64(i) + msgpack.packb(INSTANCE) + i64(1) + msgpack.packb(b"m")
                 + b"\xc0")
    return body


# -- 1. extreme ids and counters

@pytest.mark.parametrize("last_id, ids", [
    (0, [I64_MIN]),  # read(0) overflowed the heap: after_id - first_id wrapped
    (5, [-3, -2]),
    (I64_MAX, [I64_MIN, I64_MAX]),
    (3, [0]),
])
def test_ids_below_one_are_corrupt(ipc_dir, last_id, ids):
    with tiga_cffi.Channel("ids", ipc_directory=ipc_dir) as ch:
        install_payload(ipc_dir, "ids", raw_log(last_id, ids))
        before = snapshot(ipc_dir)
        for after in (0, 1, I64_MAX):
            with pytest.raises(ChannelCorrupt, match="ids start at 1"):
                ch.read(after)
        with pytest.raises(ChannelCorrupt):
            ch.write(b"x")
        assert snapshot(ipc_dir) == before


def test_the_largest_ids_read_and_stop_growing(ipc_dir):
    with tiga_cffi.Channel("big", ipc_directory=ipc_dir) as ch:
        install_payload(ipc_dir, "big", raw_log(I64_MAX, [I64_MAX - 1, I64_MAX]))
        for after in (0, 1, I64_MAX - 1, I64_MAX):
            r = ch.read(after)
            assert r.last_id == I64_MAX and not r.reset
            assert [e.id for e in r.entries] == [i for i in (I64_MAX - 1, I64_MAX) if i > after]
        assert ch.read(0).missed == I64_MAX - 2
        before = snapshot(ipc_dir)
        with pytest.raises(ChannelCorrupt, match="cannot grow any further"):
            ch.write(b"x")
        assert snapshot(ipc_dir) == before


def test_a_huge_entry_count_is_refused_before_any_allocation(ipc_dir):
    with tiga_cffi.Channel("count", ipc_directory=ipc_dir) as ch:
        install_payload(ipc_dir, "count", b"\x92\x05\xdd\xff\xff\xff\xff")
        with pytest.raises(ChannelCorrupt, match="claims 4294967295 entries"):
            ch.read()


@pytest.mark.parametrize("counter", [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
def test_reader_counters_at_the_edges(ipc_dir, counter):
    """A reader counter at INT32_MAX used to wrap to INT32_MIN when entered."""
    with tiga_cffi.Channel("rc", ipc_directory=ipc_dir, reader_grace=0.05) as ch:
        ch.write(b"a")
        state = channel_files(ipc_dir, "rc")[0]
        with open(state, "r+b") as f:
            f.seek(8)
            f.write(struct.pack("<II", counter, counter))
        assert [e.message for e in ch.read().entries] == [b"a"]
        assert ch.write(b"b").id == 2  # the writer forces a stuck counter after its grace
        assert [e.message for e in ch.read().entries] == [b"a", b"b"]
        r0, r1 = struct.unpack("<ii", state.read_bytes()[8:16])
        assert (r0, r1) != (-(2**31), -(2**31))  # entering never wrapped a counter


@pytest.mark.parametrize("start", [I64_MIN, I64_MAX, -1])
def test_hostile_owner_start_in_a_slot(ipc_dir, start):
    with tiga_cffi.Channel("slots", ipc_directory=ipc_dir) as ch:
        notify = channel_files(ipc_dir, "slots")[3]
        token = (os.getpid() << 32) | 1
        with open(notify, "r+b") as f:
            f.write(struct.pack("<qqii", token, start, os.getpid(), 0))
        assert ch.live_listeners() in (0, 1)
        with tiga_cffi.create_tiga_notification_listener("slots", ipc_directory=ipc_dir):
            assert ch.live_listeners() >= 1


# -- 4. huge files

@posix_only("an address-space limit (resource.RLIMIT_AS)")
def test_a_huge_sparse_data_file_costs_no_memory(ipc_dir):
    with tiga_cffi.Channel("huge", ipc_directory=ipc_dir) as ch:
        ch.write(b"small")
    for f in channel_files(ipc_dir, "huge")[1:3]:
        os.truncate(f, 100 << 30)  # 100 GiB, sparse
    code = (
        "import resource, sys, tiga_cffi\n"
        # far below the 2 x 150 GiB the old code tried to allocate; the two 1 GiB
        # mappings (address space, no memory) fit
        "resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        f"ch = tiga_cffi.Channel('huge', ipc_directory={str(ipc_dir)!r})\n"
        "assert ch.capacity == 1 << 30, ch.capacity\n"
        "assert [e.message for e in ch.read().entries] == [b'small']\n"
        "assert ch.write(b'more').id == 2\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tempfile.gettempdir())
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_a_payload_above_the_limit_is_corrupt_not_memory_error(ipc_dir):
    with tiga_cffi.Channel("limit", ipc_directory=ipc_dir) as ch:
        ch.write(b"a")
        for f in channel_files(ipc_dir, "limit")[1:3]:
            os.truncate(f, 3 << 30)
        state = channel_files(ipc_dir, "limit")[0]
        with open(state, "r+b") as f:
            f.write(struct.pack("<Q", 1 | ((2 << 30) << 1)))  # claims 2 GiB
        with pytest.raises(ChannelCorrupt, match="the limit: 1 GiB"):
            ch.read()


@pytest.mark.parametrize("capacity", [64, 1023, (1 << 30) + 1])
def test_capacities_outside_the_stated_range(ipc_dir, capacity):
    with pytest.raises(InvalidArgument, match="1024 bytes and 1 GiB"):
        tiga_cffi.Channel("cap", ipc_directory=ipc_dir, capacity=capacity)
    assert not any(ipc_dir.iterdir())


def test_the_smallest_capacity_holds_a_message(ipc_dir):
    with tiga_cffi.Channel("tiny", ipc_directory=ipc_dir, capacity=1024, min_age=0) as ch:
        for i in range(20):
            assert ch.write(b"x" * 500).id == i + 1


# -- 3. a full disk

@pytest.fixture
def full_fs():
    """A 256 KiB tmpfs, filled to the last byte (needs root and mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    d = tempfile.mkdtemp(prefix="tiga-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", d],
                      capture_output=True).returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@posix_only("a small tmpfs, mounted as root")
def test_a_full_disk_is_enospc_not_sigbus(full_fs):
    code = (
        "import errno, sys, tiga_cffi\n"
        "d = sys.argv[1]\n"
        "with tiga_cffi.Channel('early', ipc_directory=d, capacity=65536) as ch:\n"
        "    ch.write(b'before the disk filled up')\n"
        "import os\n"
        "fd = os.open(d + '/filler', os.O_WRONLY | os.O_CREAT)\n"
        "try:\n"
        "    while True:\n"
        "        os.write(fd, bytes(4096))\n"
        "except OSError:\n"
        "    os.close(fd)\n"
        "for what in ('open', 'listen'):\n"
        "    try:\n"
        "        if what == 'open':\n"
        "            tiga_cffi.Channel('new', ipc_directory=d)\n"
        "        else:\n"
        "            tiga_cffi.create_tiga_notification_listener('new2', ipc_directory=d)\n"
        "        print(what, 'no error')\n"
        "    except tiga_cffi.TigaOSError as e:\n"
        "        print(what, 'ENOSPC' if e.errno == errno.ENOSPC else e, e)\n"
        "with tiga_cffi.Channel('early', ipc_directory=d) as ch:\n"
        "    try:\n"
        "        ch.write(b'x' * 60000)\n"
        "        print('write no error')\n"
        "    except tiga_cffi.TigaOSError as e:\n"
        "        print('write', 'ENOSPC' if e.errno == errno.ENOSPC else e, e)\n"
        "    print('read', [m.message for m in ch.read().entries])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, full_fs], capture_output=True,
                         text=True, timeout=60, cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr  # a SIGBUS kills it with -7
    lines = out.stdout.splitlines()
    assert lines[0].startswith("open ENOSPC") and "no space left" in lines[0], lines
    assert lines[1].startswith("listen ENOSPC"), lines
    assert lines[2].startswith("write ENOSPC") and "truncated" not in lines[2], lines
    assert lines[3] == "read [b'before the disk filled up']", lines


# -- 5., 6. links, owners, modes

@not_under_wine("wine follows the links it makes, whatever FILE_FLAG_OPEN_REPARSE_POINT says")
def test_a_channel_file_that_is_a_symlink_is_refused(ipc_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    os.symlink(victim, ipc_dir / "tiga_news_data_0")
    with pytest.raises(TigaOSError) as ei:
        tiga_cffi.tiga_write("news", "hello", ipc_directory=ipc_dir)
    assert ei.value.errno == errno.ELOOP and "symbolic link" in str(ei.value)
    assert victim.read_bytes() == b"precious"
    os.symlink(victim, ipc_dir / "tiga_other_state")
    with pytest.raises(TigaOSError, match="symbolic link"):
        tiga_cffi.Channel("other", ipc_directory=ipc_dir)
    assert victim.read_bytes() == b"precious"


@posix_only("FIFOs")
def test_a_channel_file_that_is_not_a_regular_file_is_refused(ipc_dir):
    os.mkfifo(ipc_dir / "tiga_fifo_state")
    with pytest.raises(TigaOSError, match="not a regular file"):
        tiga_cffi.Channel("fifo", ipc_directory=ipc_dir)


@posix_only("mode bits and the umask (Windows: the directory's inherited ACL)")
def test_files_and_directories_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        d = tmp_path / "new" / "ipc"
        with tiga_cffi.Channel("secret", ipc_directory=d) as ch:
            ch.write(b"password=hunter2")
        for p in (tmp_path / "new", d):
            assert p.stat().st_mode & 0o777 == 0o700, oct(p.stat().st_mode)
        for f in channel_files(d, "secret"):
            assert f.stat().st_mode & 0o777 == 0o600, (f, oct(f.stat().st_mode))
        shared = tmp_path / "shared"
        with tiga_cffi.Channel("group", ipc_directory=shared, mode=0o660):
            pass
        assert shared.stat().st_mode & 0o777 == 0o770
        assert all(f.stat().st_mode & 0o777 == 0o660 for f in channel_files(shared, "group"))
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o400, 0o1600, -1, 0o200])
def test_bad_modes(tmp_path, mode):
    with pytest.raises(InvalidArgument):
        tiga_cffi.Channel("m", ipc_directory=tmp_path, mode=mode)


@posix_only("chown to another uid")
def test_private_refuses_another_owners_file(ipc_dir):
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    with tiga_cffi.Channel("p", ipc_directory=ipc_dir):
        pass
    os.chown(channel_files(ipc_dir, "p")[2], 65534, 65534)
    with pytest.raises(TigaOSError, match="belongs to another user") as ei:
        tiga_cffi.Channel("p", ipc_directory=ipc_dir, private=True)
    assert ei.value.errno == errno.EPERM
    tiga_cffi.Channel("p", ipc_directory=ipc_dir).close()  # a shared directory: fine


# -- 2. a delta write after a truncate-and-regrow

@pytest.mark.parametrize("size", [100, 40_000])  # kept bytes checked in full; sampled
def test_a_writer_notices_a_data_file_truncated_and_grown_back(ipc_dir, size):
    with tiga_cffi.Channel("regrow", ipc_directory=ipc_dir, capacity=4 << 20,
                           min_age=3600) as w:
        expected = []
        for i in range(24):
            msg = bytes([65 + i % 26]) * size
            if i >= 4 and i % 3 == 0:
                # the buffer the next write goes to: cut to nothing, grown back (zeros)
                target = channel_files(ipc_dir, "regrow")[1 + (1 - (w.version & 1))]
                capacity = target.stat().st_size
                os.truncate(target, 0)
                os.truncate(target, capacity)
            w.write(msg)
            expected.append(msg)
            with tiga_cffi.Channel("regrow", ipc_directory=ipc_dir) as fresh:
                assert [e.message for e in fresh.read().entries] == expected, i
