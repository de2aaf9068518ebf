"""Hypothesis fuzzing of the Python envelope paths and of what the CLI prints (issue 14):
any bytes, any MessagePack value in an envelope, any media type give a result or a
ProtocolError (a TigaError), never another exception; a server fed such entries keeps
answering; `tiga read` prints them without a traceback."""

import gzip
import json

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiga_cffi
from tiga_cffi import cli, protocol
from tiga_cffi.channel import Entry

MEDIA = st.sampled_from([None, "application/x-msgpack", "application/x-msgpack-compressed",
                         "text/plain", "application/octet-stream", "é/ü"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                    st.floats(allow_nan=True), st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=5), st.binary(max_size=5),
                              st.integers(-2**63, 2**64 - 1)),
                    inner, max_size=4)), max_leaves=12)
envelopes = st.one_of(
    st.tuples(st.text(max_size=40), st.integers(-3, 5), values).map(list),
    st.tuples(st.text(max_size=40), st.just(1), st.text(max_size=10), values).map(list),
    st.tuples(st.text(max_size=40), st.just(2), values, values).map(list),
    st.lists(values, max_size=6),
    values,
)


def encoded(value, compress):
    raw = msgpack.packb(value, use_bin_type=True)
    return gzip.compress(raw) if compress else raw


def looks(message, media):
    e = Entry(1, message, media, "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab", 1)
    try:
        e.envelope()
    except protocol.ProtocolError:
        pass
    assert isinstance(e.text, str)
    assert isinstance(cli.entry_text(e), str)
    json.dumps(cli.entry_json(e))
    protocol.try_envelope(message, media)


@settings(max_examples=400, deadline=None)
@given(envelopes, MEDIA, st.booleans())
def test_any_envelope_value_decodes_or_is_a_protocol_error(value, media, compress):
    looks(encoded(value, compress), media)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), MEDIA)
def test_any_bytes_decode_or_are_a_protocol_error(message, media):
    looks(message, media)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(envelopes, MEDIA, st.booleans()), min_size=1, max_size=6))
def test_a_server_fed_anything_keeps_answering(ipc_dir, items):
    errors = []
    name = "fz"
    with tiga_cffi.start_tiga_server(name, ipc_dir, lambda m, d, ctx: "ok",
                                     lambda e, ctx: errors.append(e), discovery_interval=0.1), \
            tiga_cffi.Client(name, ipc_directory=ipc_dir, client_id="c", timeout=10) as c:
        with tiga_cffi.Channel(c.request_name, ipc_directory=ipc_dir) as req:
            for value, media, compress in items:
                req.write(encoded(value, compress), media_type=media)
        assert c.invoke("echo", "after the garbage") == "ok"
    assert all(isinstance(e, Exception) for e in errors)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(envelopes, MEDIA, st.booleans()), min_size=1, max_size=5))
def test_the_cli_prints_anything_without_a_traceback(ipc_dir, capsys, items):
    with tiga_cffi.Channel("cli", ipc_directory=ipc_dir) as ch:
        last = ch.read().last_id
        for value, media, compress in items:
            ch.write(encoded(value, compress), media_type=media)
    for extra in ([], ["--json"]):
        rc = cli.main(["--dir", str(ipc_dir), "read", "cli", "--last-id", str(last), *extra])
        out = capsys.readouterr()
        assert rc == 0, out.err
        if extra:
            assert len(json.loads(out.out)["entries"]) == len(items)
