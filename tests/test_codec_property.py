"""Property tests of the logbook codec (the C decoder and in-place appender)."""

import msgpack
from conftest import header_len, logbook
from hypothesis import given, settings
from hypothesis import strategies as st

from tiga_cffi._errors import ChannelCorrupt, check
from tiga_cffi._tiga import ffi, lib

INSTANCE = b"0c6a8e6e-2b1d-4f7c-9a3b-5d4e3f2a1b0c"

messages = st.lists(
    st.tuples(st.binary(max_size=300), st.one_of(st.none(), st.text(max_size=40).filter(
        lambda s: "\0" not in s))),
    min_size=1,
    max_size=12,
)


def append(old, batch, now, min_age, capacity=1 << 20):
    msgs = ffi.new("tiga_message[]", len(batch))
    keep = []
    for i, (data, media) in enumerate(batch):
        b = ffi.from_buffer(data)
        keep.append(b)
        msgs[i].data = b
        msgs[i].len = len(data)
        if media is not None:
            m = ffi.new("char[]", media.encode())
            keep.append(m)
            msgs[i].media_type = m
    out = ffi.new("uint8_t **")
    out_len = ffi.new("size_t *")
    check(lib.tiga_logbook_append(old, len(old), msgs, len(batch), INSTANCE, now, min_age,
                                  capacity, out, out_len))
    try:
        return ffi.buffer(out[0], out_len[0])[:]
    finally:
        lib.tiga_free(out[0])


def decode(payload, after=0):
    res = ffi.new("tiga_read_result **")
    check(lib.tiga_logbook_decode(payload, len(payload), after, res))
    r = res[0]
    try:
        return r.last_id, [
            (r.entries[i].id, ffi.buffer(r.entries[i].message, r.entries[i].message_len)[:],
             None if r.entries[i].media_type == ffi.NULL
             else ffi.unpack(r.entries[i].media_type, r.entries[i].media_type_len).decode(
                 "utf-8", "replace"))
            for i in range(r.count)
        ]
    finally:
        lib.tiga_read_result_free(r)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, min_size=1, max_size=6))
def test_roundtrip_matches_msgpack(batches):
    payload = b""
    expected = []
    for n, batch in enumerate(batches):
        payload = append(payload, batch, now=1000 + n, min_age=10**9)
        expected += batch
    last_id, entries = decode(payload)
    assert last_id == len(expected)
    assert [(m, t) for _, m, t in entries] == expected
    assert [i for i, _, _ in entries] == list(range(1, len(expected) + 1))
    # msgpack agrees byte for byte on the structure (no re-encoding drift)
    schema, raw_last, raw_entries = logbook(msgpack.unpackb(payload, raw=False))
    assert raw_last == last_id
    assert [(e[3], e[4]) for e in raw_entries] == expected
    assert all(e[1] == INSTANCE.decode() for e in raw_entries)
    # plain, unless the log once had exactly two entries (then enveloped, schema 1,
    # for good: the Node addon misreads a plain log of two)
    counts = [sum(len(b) for b in batches[:k + 1]) for k in range(len(batches))]
    assert schema == (1 if 2 in counts else None)
    # retained entries are copied, never re-encoded: the entries are exactly their
    # msgpack encoding after a fixed-width header (uint64 last_id, array32 count)
    hl = header_len(schema)
    assert payload[:hl] == (b"" if schema is None else b"\x92\x01") + b"\x92\xcf" + \
        last_id.to_bytes(8, "big") + b"\xdd" + len(raw_entries).to_bytes(4, "big")
    assert payload[hl:] == b"".join(msgpack.packb(e, use_bin_type=True) for e in raw_entries)


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, min_size=2, max_size=5), st.integers(0, 5))
def test_trimming_drops_only_old_entries(batches, cut):
    payload = b""
    ids_at = []
    for n, batch in enumerate(batches):
        payload = append(payload, batch, now=n * 10, min_age=10**9)
        ids_at.append(len(batch))
    now = 10 * len(batches)
    min_age = now - cut * 10  # entries with timestamp < cut*10 are old
    payload = append(payload, [(b"x", None)], now=now, min_age=min_age)
    _, entries = decode(payload)
    old = sum(ids_at[: min(cut, len(batches))])
    # never a young entry dropped; old ones go (lazily: when they are a good part
    # of the payload, always when they are all of it)
    assert 1 <= entries[0][0] <= old + 1
    assert [e[0] for e in entries] == list(range(entries[0][0], sum(ids_at) + 2))
    if cut >= len(batches):
        assert entries[0][0] == old + 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 10))
def test_arbitrary_bytes_give_an_error_not_a_crash(data, after):
    try:
        decode(data, after)
    except ChannelCorrupt:
        pass


@settings(max_examples=300, deadline=None)
@given(messages, st.integers(0, 400), st.integers(0, 255))
def test_mutated_payloads_give_an_error_not_a_crash(batch, pos, byte):
    payload = bytearray(append(b"", batch, now=1, min_age=0))
    payload[pos % len(payload)] = byte
    try:
        decode(bytes(payload))
    except ChannelCorrupt:
        pass
    try:
        append(bytes(payload), [(b"y", None)], now=2, min_age=10**9)
    except ChannelCorrupt:
        pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=200),
                          st.one_of(st.none(), st.sampled_from(["text/plain", "a/b", "é/ü"])),
                          st.integers(0, 1)), min_size=1, max_size=20),
       st.integers(0, 5))
def test_read_result_unpacking_matches_field_by_field(tmp_path_factory, items, after):
    """The bulk unpacking of read results (one struct pass, slices of one buffer)
    gives exactly what reading each cdata field gives, and what was written."""
    from tiga_cffi.channel import Channel, _entries_by_field, _entries_of

    d = tmp_path_factory.mktemp("unpack")
    writers = [Channel("u", ipc_directory=d, min_age=3600), Channel("u", ipc_directory=d)]
    reader = Channel("u", ipc_directory=d)
    try:
        for data, media, w in items:
            writers[w].write(data, media_type=media)
        out = ffi.new("tiga_read_result **")
        check(reader._handle.call(lib.tiga_channel_read, after, out))
        try:
            fast, slow = _entries_of(out[0]), _entries_by_field(out[0])
        finally:
            lib.tiga_read_result_free(out[0])
        assert fast == slow
        # a position past the log's last id reads the log from its start (reset)
        start = after if after <= len(items) else 0
        assert [(e.message, e.media_type) for e in fast] == \
            [(data, media) for data, media, _ in items][start:]
        # one instance id per writing handle
        assert len({e.instance for e in fast}) == len({w for _, _, w in items[start:]})
        assert all(len(e.instance) == 36 for e in fast)
    finally:
        for ch in writers + [reader]:
            ch.close()
