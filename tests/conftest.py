import os
import struct
from pathlib import Path

import pytest

import tiga_cffi


@pytest.fixture
def ipc_dir(tmp_path):
    d = tmp_path / "ipc"
    d.mkdir()
    yield d
    tiga_cffi.clear_cache()


def channel_files(directory, name):
    base = Path(directory) / f"tiga_{name}"
    return [Path(f"{base}{s}") for s in ("_state", "_data_0", "_data_1", "_notify")]


def snapshot(directory):
    """Every file's bytes in the directory, to prove an operation changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}


def make_version(idx, payload):
    h = tiga_cffi.wyhash(payload) & 0xFFFFFF
    return idx | (len(payload) << 1) | (h << 40)


def install_payload(directory, name, payload, idx=0, version=None):
    """Put a payload into a channel's files by hand, as a peer would."""
    state, d0, d1, _ = channel_files(directory, name)
    target = d0 if idx == 0 else d1
    with open(target, "r+b") as f:
        f.write(payload)
    with open(state, "r+b") as f:
        f.write(struct.pack("<Q", make_version(idx, payload) if version is None else version))


def logbook(raw):
    """(schema, last_id, entries) of a logbook decoded with msgpack, in either form
    (the C# rule: enveloped only if the second element is [int, array])."""
    if (len(raw) == 2 and isinstance(raw[1], list) and len(raw[1]) == 2
            and isinstance(raw[1][0], int) and isinstance(raw[1][1], list)):
        return raw[0], raw[1][0], raw[1][1]
    return None, raw[0], raw[1]


def header_len(schema):
    """Bytes of the header we write: [last_id as uint64, array32], enveloped or not."""
    return 15 if schema is None else 17


def read_state(directory, name):
    return struct.unpack("<QiI", channel_files(directory, name)[0].read_bytes()[:16])


def pytest_configure(config):
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
