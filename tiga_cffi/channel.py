"""Channels: Channel, tiga_write, tiga_read and the bounded handle cache."""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading
import time
from collections import OrderedDict
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import protocol
from ._errors import ChannelClosed, InvalidArgument, InvalidName, InvalidType, check
from ._handle import OwnedHandle
from ._tiga import ffi, lib

if TYPE_CHECKING:
    from .subscription import Subscription

PathLike = Union[str, "os.PathLike[str]"]
Message = Union[str, bytes, bytearray, memoryview]

DEFAULT_CAPACITY = lib.TIGA_DEFAULT_CAPACITY


class Entry(NamedTuple):
    """One logbook entry."""

    id: int
    message: bytes
    media_type: Optional[str]
    instance: str
    timestamp: int

    def envelope(self) -> protocol.Envelope:
        """The entry's message decoded as a publish/invoke/response envelope."""
        return protocol.decode_envelope(self.message, self.media_type)

    @property
    def text(self) -> str:
        """The text of a publish envelope (what ``tiga_write(name, "text")`` wrote),
        else the message decoded as UTF-8 (undecodable bytes replaced). Never raises,
        whatever a peer wrote."""
        if protocol.is_envelope_media(self.media_type):
            env = protocol.try_envelope(self.message, self.media_type)  # None: not one
            if isinstance(env, protocol.Publish):
                return env.data if isinstance(env.data, str) else str(env.data)
        return self.message.decode("utf-8", "replace")


class ReadResult(NamedTuple):
    """What a read returns: the entries after the asked-for id, the logbook's last id,
    and how many ids after the asked-for id were trimmed before this read saw them.

    ``reset`` is True when the log's last id was below the asked-for id: the log
    went back (a peer reset it, or the channel was made anew), and the entries are
    those of the new log from its start (as if ``last_id=0`` had been asked for)."""

    last_id: int
    entries: List[Entry]
    missed: int
    first_id: int = 0  # the oldest retained entry's id (0: the log is empty)
    reset: bool = False

    def __str__(self) -> str:
        text = f"last_id={self.last_id} entries={len(self.entries)} missed={self.missed}"
        return text + " reset" if self.reset else text


class WriteResult(NamedTuple):
    """What a write returns: the id the entry was given."""

    id: int

    def __str__(self) -> str:
        return f"ok id={self.id}"


class ChannelInfo(NamedTuple):
    """A channel's numbers (``Channel.info``)."""

    name: str
    version: int
    capacity: int
    payload_len: int
    last_id: int
    retained: int
    first_id: int
    schema_version: Optional[int]
    live_listeners: int
    resets: int = 0  # times this handle saw the log's ids go back (a peer reset it)
    high_id: int = 0  # the highest id this handle has seen; its writes issue ids above it
    subscribers: int = 0  # live declared subscribers (subscribe(durable=True))
    lowest_position: int = -1  # the last id the slowest of them has read (-1: none)


def fs_directory(ipc_directory: Any) -> str:
    """The directory as an absolute path (the C# peer makes it absolute too)."""
    if isinstance(ipc_directory, bytes) or not isinstance(ipc_directory, (str, os.PathLike)):
        kind = type(ipc_directory).__name__
        raise InvalidType(f"ipc_directory must be str or os.PathLike, not {kind}")
    d = os.fspath(ipc_directory)
    if not isinstance(d, str) or not d.strip():
        raise InvalidArgument("ipc_directory is required (an existing or creatable directory)")
    if "\0" in d:
        raise InvalidArgument("ipc_directory contains a NUL character")
    return os.path.abspath(d.strip())


def name_bytes(name: Any, what: str = "channel name") -> bytes:
    if not isinstance(name, str):
        raise InvalidType(f"{what} must be str, not {type(name).__name__}")
    try:
        b = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(f"{what} {name!r} is not valid Unicode") from None
    rc = lib.tiga_validate_name(b, len(b))
    if rc:
        why = ffi.string(lib.tiga_last_error()).decode("utf-8", "replace")
        raise InvalidName(f"invalid {what} {name!r}: {why.replace('the name', 'it')}", rc, why)
    return b


def validate_name(name: Any, what: str = "channel name") -> str:
    """Check a channel name or client id against the protocol's rules; return it."""
    name_bytes(name, what)
    return str(name)


def encode_message(message: Any, media_type: Optional[str]) -> Tuple[Any, Optional[str]]:
    """The bytes and media type a message is written as (PROTOCOL section 4): a str
    with no media type becomes a publish envelope; bytes-like are written as they are."""
    if media_type is not None and not isinstance(media_type, str):
        raise InvalidType(f"media_type must be str or None, not {type(media_type).__name__}")
    if media_type is not None and "\0" in media_type:
        raise InvalidArgument("media_type contains a NUL character")
    if isinstance(message, str):
        if media_type is None:
            return protocol.encode_publish(message), protocol.MEDIA_MSGPACK
        return message.encode("utf-8"), media_type
    if isinstance(message, (bytes, bytearray, memoryview)):
        return message, media_type
    raise InvalidType(
        f"message must be str or a bytes-like object, not {type(message).__name__}"
    )


def _pack(messages: Sequence[Any], media_type: Optional[str]) -> Optional[Tuple[bytes, Any, Any]]:
    """Bytes-like messages as one buffer, their lengths and the media type for C;
    None when any is not (a str becomes a publish envelope: the general path)."""
    if media_type is not None and (not isinstance(media_type, str) or "\0" in media_type):
        return None  # the general path says what is wrong with it
    try:
        blob = b"".join(messages)
    except TypeError:
        return None
    lens = [len(m) for m in messages]
    if sum(lens) != len(blob):  # a memoryview of items wider than a byte
        return None
    mtb = ffi.NULL if media_type is None else media_type.encode("utf-8")
    return blob, ffi.new("size_t[]", lens), mtb


def _check_last_id(last_id: Any) -> None:
    if isinstance(last_id, bool) or not isinstance(last_id, int):
        raise InvalidType("last_id must be an int")
    if last_id < 0 or last_id >= 1 << 63:
        raise InvalidArgument("last_id must be between 0 and 2**63-1")


# the C library's bound on a time option (csrc/src/channel.c, TIGA_MAX_MS): about 73 years
MAX_SECONDS = (2**63 - 1) // 1_000_000 // 4 / 1000


def _seconds_to_ms(value: Optional[float], what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidType(f"{what} must be a number of seconds")
    if not value >= 0:  # (NaN too)
        raise InvalidArgument(f"{what} must not be negative, not {value!r}")
    if value > MAX_SECONDS:
        raise InvalidArgument(f"{what} must be at most {MAX_SECONDS:.0f} s, not {value!r}")
    return int(round(value * 1000))


def make_options(
    capacity: Optional[int] = None,
    min_age: Optional[float] = None,
    reader_grace: Optional[float] = None,
    lock_timeout: Optional[float] = None,
    flush: bool = False,
    create_dir: bool = True,
    write_timeout: Optional[float] = None,
    mode: Optional[int] = None,
    private: bool = False,
    read_min_age: Optional[float] = None,
    pace: Optional[float] = None,
) -> Any:
    opt = ffi.new("tiga_channel_options *")
    lib.tiga_channel_options_init(opt)
    if capacity is not None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise InvalidType("capacity must be an int (bytes)")
        if capacity < lib.TIGA_MIN_CAPACITY or capacity > lib.TIGA_MAX_CAPACITY:
            raise InvalidArgument(
                f"capacity must be between {lib.TIGA_MIN_CAPACITY} bytes and 1 GiB "
                f"({lib.TIGA_MAX_CAPACITY}), not {capacity}")
        opt.capacity = capacity
    opt.min_age_ms = _seconds_to_ms(min_age, "min_age", opt.min_age_ms)
    opt.reader_grace_ms = _seconds_to_ms(reader_grace, "reader_grace", opt.reader_grace_ms)
    opt.lock_timeout_ms = _seconds_to_ms(lock_timeout, "lock_timeout", opt.lock_timeout_ms)
    opt.write_timeout_ms = _seconds_to_ms(write_timeout, "write_timeout", opt.write_timeout_ms)
    opt.flush = 1 if flush else 0
    opt.create_dir = 1 if create_dir else 0
    opt.mode = check_mode(mode)
    opt.private_files = 1 if private else 0
    opt.read_min_age_ms = _seconds_to_ms(read_min_age, "read_min_age", -1)
    opt.pace_ms = _seconds_to_ms(pace, "pace", opt.pace_ms)
    return opt


DEFAULT_MODE = 0o600


def dir_mode(mode: int) -> int:
    """A directory's mode for files of ``mode``: x wherever r is (0o600 -> 0o700)."""
    return mode | ((mode & 0o444) >> 2)


def make_directory(path: str, mode: int = DEFAULT_MODE) -> None:
    """Create ``path`` and its missing parents; those made get ``dir_mode(mode)``
    whatever the umask (existing ones are left as they are)."""
    missing = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, dir_mode(mode))
        except FileExistsError:
            continue
        os.chmod(d, dir_mode(mode))


def check_mode(mode: Any) -> int:
    """The permission bits for new channel files (default 0o600)."""
    if mode is None:
        return DEFAULT_MODE
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise InvalidType("mode must be an int such as 0o600 or 0o660")
    if mode < 0 or mode & ~0o777 or not mode & 0o600 == 0o600:
        raise InvalidArgument(
            f"mode 0o{mode:o} must be permission bits (0o777 at most) that let the owner "
            "read and write, e.g. 0o600 or 0o660")
    return mode


def _entry_layout() -> Optional[str]:
    """A struct format that unpacks one tiga_entry as C laid it out, or None when
    this platform's layout is not the expected one (then fields are read one by one)."""
    fmt = "@qqPNPN40s"
    fields = ("id", "timestamp", "message", "message_len", "media_type", "media_type_len",
              "instance")
    offsets = [ffi.offsetof("tiga_entry", f) for f in fields]
    if struct.calcsize(fmt) != ffi.sizeof("tiga_entry") or offsets != [0, 8, 16, 24, 32, 40, 48]:
        return None
    return fmt


_ENTRY_FORMAT = _entry_layout()
# the same, without the media type and the instance
_ENTRY_HEAD = None if _ENTRY_FORMAT is None else "@qqPN" + f"{ffi.sizeof('tiga_entry') - 32}x"
BIG_READ = 1 << 18  # a read result of this many bytes, in entries of 4 KiB or more on average


def _entries_of(res: Any) -> List[Entry]:
    """Entry tuples for a read result. The entry structs are unpacked in one pass
    (struct.iter_unpack) and messages sliced out of the one copy of the payload
    bytes, instead of touching cdata fields one at a time."""
    n = res.count
    if n == 0:
        return []
    if _ENTRY_FORMAT is None or (res.bytes_len >= BIG_READ and res.bytes_len >= n * 4096):
        # big entries: each message copied once, straight from C's result (the
        # one copy of all the bytes that small entries share would be a second)
        return _entries_by_field(res)
    raw = ffi.buffer(res.entries, n * ffi.sizeof("tiga_entry"))[:]
    blob = ffi.buffer(res.bytes, res.bytes_len)[:]
    base = int(ffi.cast("uintptr_t", res.bytes))
    new = tuple.__new__
    if res.uniform and _ENTRY_HEAD is not None:
        # one writer, one media type (the common case): only id, time and message
        # per entry
        e0 = res.entries[0]
        media = None if e0.media_type == ffi.NULL else ffi.unpack(
            e0.media_type, e0.media_type_len).decode("utf-8", "replace")
        text = ffi.string(e0.instance).decode("ascii")
        return [new(Entry, (eid, blob[mp - base:mp - base + ml], media, text, ts))
                for eid, ts, mp, ml in struct.iter_unpack(_ENTRY_HEAD, raw)]
    # consecutive entries mostly share a writer instance and a media type
    instances: Dict[bytes, str] = {}
    medias: Dict[bytes, str] = {}
    out: List[Entry] = []
    append = out.append
    for eid, ts, mp, ml, tp, tl, inst in struct.iter_unpack(_ENTRY_FORMAT, raw):
        m = mp - base
        media = None
        if tp:
            t = tp - base
            key = blob[t:t + tl]
            media = medias.get(key)
            if media is None:
                media = medias[key] = key.decode("utf-8", "replace")
        text = instances.get(inst)
        if text is None:
            text = instances[inst] = inst.split(b"\0", 1)[0].decode("ascii")
        append(new(Entry, (eid, blob[m:m + ml], media, text, ts)))
    return out


def _entries_by_field(res: Any) -> List[Entry]:
    out = []
    for i in range(res.count):
        e = res.entries[i]
        media = None
        if e.media_type != ffi.NULL:
            media = ffi.unpack(e.media_type, e.media_type_len).decode("utf-8", "replace")
        out.append(Entry(e.id, ffi.buffer(e.message, e.message_len)[:], media,
                         ffi.string(e.instance).decode("ascii"), e.timestamp))
    return out


class Channel:
    """One channel ``(ipc_directory, name)``, opened once and used many times.

    Thread-safe; use as a context manager or call close(). The files are created
    when missing (data files at ``capacity`` bytes, 1 MiB by default); an existing
    channel keeps the capacity of its files.

    min_age (seconds, default 1.0): entries younger than this are never trimmed.
    reader_grace: how long a write waits for a reader to leave a buffer.
    lock_timeout: how long a write waits for other writers.
    flush: fdatasync each write (the peers' msync; not needed for IPC).
    write_timeout (seconds, default 0): when a write does not fit beside the retained
    entries, wait this long for the oldest to age out (backpressure) before ChannelFull.
    mode (default 0o600): permission bits of the files this open creates, whatever the
    umask; a directory it creates gets x wherever r is (0o700). Use 0o660 to share a
    channel with a group on purpose (SECURITY.md). Existing files keep their modes.
    private: refuse channel files another user owns (for a private directory).
    A channel file that is a symbolic link is always refused (TigaOSError, ELOOP).
    read_min_age (seconds; default: min_age): with declared subscribers
    (``subscribe(durable=True)``), this object's writes keep every entry a live
    declared subscriber has not read, whatever its age, up to the capacity (then a
    write waits up to ``write_timeout``, or raises ChannelFull), and trim the entries
    all of them have read once they are read_min_age old. The default keeps those
    for min_age, for readers that declare nothing (the peers); 0 trims them at once
    (say so when every reader declares itself).
    pace (seconds, default 0.001; 0: never): how long one write may wait for the
    slowest declared subscriber to read on, when it has 256 KiB or more unread and
    is reading (its position moved in the last 10 ms). Every write hashes, and every
    read verifies, what it has not read: a writer that runs ahead makes both pay for
    it again at each write. A subscriber that stopped is not waited for.
    """

    def __init__(
        self,
        name: str,
        *,
        ipc_directory: PathLike,
        capacity: Optional[int] = None,
        min_age: Optional[float] = None,
        reader_grace: Optional[float] = None,
        lock_timeout: Optional[float] = None,
        flush: bool = False,
        create_dir: bool = True,
        write_timeout: Optional[float] = None,
        mode: Optional[int] = None,
        private: bool = False,
        read_min_age: Optional[float] = None,
        pace: Optional[float] = None,
    ) -> None:
        nb = name_bytes(name)
        self.name = name
        self.ipc_directory = fs_directory(ipc_directory)
        opt = make_options(capacity, min_age, reader_grace, lock_timeout, flush, create_dir,
                           write_timeout, mode, private, read_min_age, pace)
        directory = self.ipc_directory.encode()

        def open_channel() -> Any:
            out = ffi.new("tiga_channel **")
            check(lib.tiga_channel_open(directory, nb, opt, out))
            return out[0]

        self._handle = OwnedHandle(open_channel, lib.tiga_channel_close, f"channel {name!r}")
        self._capacity: int = self._handle.call(lib.tiga_channel_capacity)

    @property
    def capacity(self) -> int:
        """Bytes per data file: as found at open, more once another process grew the
        files (the Node addon grows small ones to 1 MiB) and a payload needed it."""
        try:
            self._capacity = int(self._handle.call(lib.tiga_channel_capacity))
        except ChannelClosed:
            pass
        return self._capacity

    # -- lifetime
    def close(self) -> None:
        """Close the files (deferred until calls running in other threads return)."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called (calls then raise ChannelClosed)."""
        return self._handle.closed

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"capacity={self.capacity}"
        return f"<Channel {self.name!r} in {self.ipc_directory!r} {state}>"

    # -- writing
    def write(self, message: Message, *, media_type: Optional[str] = None) -> WriteResult:
        """Append one message; returns its id.

        A str without media type is written as a publish envelope (what the peers'
        write does with text); bytes-like are stored as they are with ``media_type``.
        Raises MessageTooLarge, ChannelFull, Timeout (lock), ChannelCorrupt.
        """
        data, mt = encode_message(message, media_type)
        first = ffi.new("int64_t *")
        mtb = ffi.NULL if mt is None else mt.encode("utf-8")
        if isinstance(data, bytes):
            check(self._handle.call(lib.tiga_channel_append1, data, len(data), mtb, first))
        else:
            buf = ffi.from_buffer(data)
            check(self._handle.call(lib.tiga_channel_append1, buf, len(buf), mtb, first))
        return WriteResult(first[0])

    def write_many(
        self, messages: Iterable[Message], *, media_type: Optional[str] = None
    ) -> List[int]:
        """Append several messages as consecutive entries in one version (one copy,
        one checksum, one wake-up). Returns their ids. All or nothing."""
        if not isinstance(messages, (list, tuple)):
            messages = list(messages)
        if not messages:
            return []
        packed = _pack(messages, media_type)
        if packed is not None:  # bytes-like only: one buffer, one array of lengths
            blob, lens, mtb = packed
            first = ffi.new("int64_t *")
            check(self._handle.call(lib.tiga_channel_append_packed, blob, len(blob), lens,
                                    len(messages), mtb, first))
            return list(range(first[0], first[0] + len(messages)))
        encoded = [encode_message(m, media_type) for m in messages]
        if not encoded:
            return []
        n = len(encoded)
        msgs = ffi.new("tiga_message[]", n)
        keep = []
        for i, (data, mt) in enumerate(encoded):
            buf = ffi.from_buffer(data)
            msgs[i].data = buf
            msgs[i].len = len(buf)
            if mt is not None:
                mtb = ffi.new("char[]", mt.encode("utf-8"))
                msgs[i].media_type = mtb
                keep.append(mtb)
            keep.append(buf)
        first = ffi.new("int64_t *")
        check(self._handle.call(lib.tiga_channel_append, msgs, n, first))
        return list(range(first[0], first[0] + n))

    # -- reading
    def read(self, last_id: int = 0) -> ReadResult:
        """The entries with id > last_id (verified: never bytes that failed the
        checksum), the logbook's last id, and how many ids were missed."""
        return self._read(last_id, None)

    def _read(self, last_id: int, loaded: Optional[Callable[[int], None]]) -> ReadResult:
        """read(); loaded(last_id) is called as soon as the payload is in this
        process's verified copy, before the entries are made (a declared
        subscriber publishes its position there: the writer may let go of them)."""
        _check_last_id(last_id)
        out = ffi.new("tiga_read_result **")
        handle = self._handle
        h = handle.acquire()
        try:
            # the entries' bytes are copied once, straight from the handle's verified
            # copy, which stays locked until they are
            check(lib.tiga_channel_read_borrow(h, last_id, out))
            res = out[0]
            try:
                if loaded is not None:
                    loaded(res.last_id)
                return ReadResult(res.last_id, _entries_of(res), res.missed, res.first_id,
                                  bool(res.reset))
            finally:
                lib.tiga_channel_read_done(h, res)
        finally:
            handle.release()

    @property
    def version(self) -> int:
        """The state word (changes with every write; 0 = nothing written)."""
        return int(self._handle.call(lib.tiga_channel_version))

    def pending_writes(self) -> int:
        """How many writes of this object's threads are queued for the next version
        right now. Writes made at the same time from several threads through one
        Channel go out together (one version, one checksum, one wake-up), each
        still getting its own ids and its own result."""
        return int(self._handle.call(lib.tiga_channel_pending_writes))

    def set_min_age(self, seconds: float) -> None:
        """Change the minimum age (seconds) this object's writes keep entries for."""
        ms = _seconds_to_ms(seconds, "min_age", 0)
        check(self._handle.call(lib.tiga_channel_set_min_age, ms))

    def info(self) -> ChannelInfo:
        """The channel's numbers now (reads and verifies the payload): version word,
        capacity, payload size, last id, retained entries and the oldest one's id, the
        form (schema version, None for plain), live listeners, resets seen, high id,
        live declared subscribers and the lowest position among them."""
        info = ffi.new("tiga_channel_info *")
        live = ffi.new("int32_t *")
        subs = ffi.new("int32_t *")
        lowest = ffi.new("int64_t *")
        check(self._handle.call(lib.tiga_channel_info_get, info))
        check(self._handle.call(lib.tiga_channel_live_listeners, live))
        check(self._handle.call(lib.tiga_channel_subscribers, subs, lowest))
        return ChannelInfo(
            self.name,
            info.version,
            info.capacity,
            info.payload_len,
            info.last_id,
            info.retained,
            info.first_id,
            None if info.schema_version < 0 else info.schema_version,
            live[0],
            info.resets,
            info.high_id,
            subs[0],
            lowest[0],
        )

    def linked(self) -> bool:
        """Whether the channel's four files still have their names: False once someone
        deleted them (a server's scavenger, a person); this handle then works on files
        nobody else opens, and a new Channel is needed."""
        out = ffi.new("int32_t *")
        check(self._handle.call(lib.tiga_channel_linked, out))
        return bool(out[0])

    def live_listeners(self) -> int:
        """How many live processes listen on this channel (dead owners' slots are freed)."""
        live = ffi.new("int32_t *")
        check(self._handle.call(lib.tiga_channel_live_listeners, live))
        return int(live[0])

    def signal(self) -> int:
        """Wake every listener of the channel; returns how many slots were signalled."""
        woken = ffi.new("int32_t *")
        check(self._handle.call(lib.tiga_channel_signal, woken))
        return int(woken[0])

    def subscribe(self, last_id: Optional[int] = None, *, missed: str = "raise",
                  durable: bool = False, spin: float = 50e-6) -> Subscription:
        """Follow this channel: a Subscription yields its entries as they arrive
        (``for entry in ...`` or ``async for entry in ...``), after ``last_id``
        (None: after what is there now), and reports entries trimmed before it read
        them (EntriesMissed) instead of hiding them. ``durable``: declare the
        subscriber, so that our writers keep what it has not read yet (see
        Subscription)."""
        from .subscription import Subscription

        return Subscription(self, last_id, missed=missed, durable=durable, spin=spin)

    def _raw(self) -> OwnedHandle:
        return self._handle


@contextlib.contextmanager
def state_lock(directory: str, name: str, wait: Optional[float] = None) -> Iterator[bool]:
    """Hold the lock every append takes (tiga_lock_open: flock on the channel's
    state file, LockFileEx on Windows) for a check-then-act that must not
    interleave with another process's: a scavenger's liveness check and unlink
    against a client's open and registration. Yields False when the file is
    missing (or is a link), or when ``wait`` (seconds) passed without the lock;
    True while it is held. The C wait runs in slices, so Ctrl-C is seen."""
    d = os.fsencode(directory)
    n = name.encode()
    out = ffi.new("tiga_lock **")
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        left = _SLICE if deadline is None else min(_SLICE, max(0.0, deadline - time.monotonic()))
        rc = lib.tiga_lock_open(d, n, int(left * 1000), out)
        if rc == 0:
            break
        if rc in (-errno.ENOENT, -errno.ELOOP):
            yield False
            return
        if rc != lib.TIGA_ETIMEDOUT:
            check(rc)
        if deadline is not None and time.monotonic() >= deadline:
            yield False
            return
    try:
        yield True
    finally:
        lib.tiga_lock_close(out[0])


_SLICE = 0.2  # longest C wait of state_lock, seconds


# -- the module functions reuse open channels

_CACHE_SIZE = 64
_cache: OrderedDict[Tuple[str, str], Channel] = OrderedDict()
_cache_lock = threading.Lock()


def cached_channel(name: str, ipc_directory: PathLike) -> Channel:
    """An open Channel from a bounded LRU cache (evicted ones close when unused)."""
    key = (fs_directory(ipc_directory), validate_name(name))
    with _cache_lock:
        ch = _cache.get(key)
        if ch is not None and not ch.closed:
            _cache.move_to_end(key)
            return ch
    ch = Channel(name, ipc_directory=key[0])
    with _cache_lock:
        other = _cache.get(key)
        if other is not None and not other.closed:
            ch.close()
            return other
        _cache[key] = ch
        while len(_cache) > _CACHE_SIZE:
            _, old = _cache.popitem(last=False)
            old.close()
    return ch


def clear_cache() -> None:
    """Close every cached channel (they reopen on next use)."""
    with _cache_lock:
        items = list(_cache.values())
        _cache.clear()
    for ch in items:
        ch.close()


def _forget_after_fork() -> None:
    # The child gets its own handles: no sharing of descriptors with the parent.
    global _cache_lock
    _cache_lock = threading.Lock()
    _cache.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def tiga_write(
    name: str, message: Message, *, ipc_directory: PathLike, media_type: Optional[str] = None
) -> WriteResult:
    """Append ``message`` to channel ``name`` (created if missing); returns its id."""
    return cached_channel(name, ipc_directory).write(message, media_type=media_type)


def tiga_read(name: str, *, ipc_directory: PathLike, last_id: int = 0) -> ReadResult:
    """The entries of channel ``name`` after ``last_id``. A channel that does not
    exist reads as empty and is not created (nothing is written by a read)."""
    key = (fs_directory(ipc_directory), validate_name(name))
    with _cache_lock:
        ch = _cache.get(key)
    if (ch is None or ch.closed) and not os.path.exists(
            os.path.join(key[0], f"tiga_{name}_state")):
        _check_last_id(last_id)
        return ReadResult(0, [], 0, 0, last_id > 0)
    return cached_channel(name, ipc_directory).read(last_id)
