"""The ``tiga`` command: demo, write, read, tail, invoke, serve, ls."""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

from . import __version__
from ._errors import (
    InvalidArgument,
    InvalidName,
    InvalidType,
    RemoteError,
    ServerNotReady,
    TigaError,
    Timeout,
)
from .channel import Channel, Entry, check_mode, fs_directory, make_directory, validate_name
from .client import Client
from .protocol import ProtocolError, Publish
from .server import InvokeContext, TigaServer

EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT, EXIT_REMOTE = 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
SUFFIXES = ("_state", "_data_0", "_data_1", "_notify")


class UserError(Exception):
    """A mistake on the command line: one line of explanation, no traceback."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def default_directory() -> str:
    """The per-user directory used without --dir and $TIGA_IPC_DIR:
    ``$XDG_RUNTIME_DIR/tiga-ipc`` when that is set (a private, per-user tmpfs), else
    ``<temp dir>/tiga-ipc-<uid>`` (on Windows ``%TEMP%\\tiga-ipc-<user>``, the temp
    directory being in the user's own profile). It must be private: see private_directory()."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.name != "nt":
        return os.path.join(runtime, "tiga-ipc")
    try:
        user = str(os.getuid())
    except AttributeError:  # pragma: no cover - Windows
        user = os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"tiga-ipc-{user}")


def private_directory(d: str) -> str:
    """Make sure the default directory is ours alone: created 0700 when missing; an
    existing one must be a real directory (not a link), owned by us, and writable by
    no one else, or it is refused (another user could have made it in /tmp to plant
    links or read our entries)."""
    try:
        os.mkdir(d, 0o700)
        os.chmod(d, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(d)
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = "it is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        why = "it is not a directory"
    elif os.name == "nt":
        pass  # no mode bits or uids: the profile's own temp directory is the user's
    elif hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        why = f"it belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    elif st.st_mode & 0o022:
        why = f"its mode {stat.S_IMODE(st.st_mode):04o} lets other users write in it"
    if why:
        raise UserError(
            f"refusing the default directory {d}: {why}. Remove it, or give a directory "
            "with --dir (or $TIGA_IPC_DIR) on purpose")
    return d


def ipc_directory(args: argparse.Namespace, create: bool = True) -> str:
    """The directory a command works in. Commands that only look (read, tail, ls)
    do not create it: a missing one is an error."""
    explicit = args.dir or os.environ.get("TIGA_IPC_DIR")
    d = fs_directory(explicit or default_directory())
    args.private = not explicit
    if not os.path.isdir(d):
        if os.path.lexists(d) and not os.path.islink(d):
            raise UserError(f"{d} exists and is not a directory")
        if not create:
            raise UserError(f"no directory {d} (nothing has been written there yet)")
    if not explicit:
        return private_directory(d)
    if not os.path.isdir(d):
        make_directory(d, args.mode)
    return d


def message_arg(value: str, what: str) -> str:
    """A message from the command line: `-` reads standard input, `@path` a file (for
    anything over the argument-size limit), anything else is the text itself."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@") and len(value) > 1:
        try:
            with open(value[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as e:
            raise UserError(f"{what} {value}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{what} {value} is not UTF-8 text: {e}") from None
    return value


def open_channel(args: argparse.Namespace, d: str, name: str, **kw: Any) -> Channel:
    return Channel(name, ipc_directory=d, mode=args.mode, private=args.private, **kw)


def existing_channel(args: argparse.Namespace, d: str, name: str) -> Channel:
    validate_name(name)
    if not os.path.exists(os.path.join(d, f"tiga_{name}_state")):
        raise UserError(f"no channel {name!r} in {d} (tiga ls lists the channels)")
    return open_channel(args, d, name, create_dir=False)


def shown(name: str) -> str:
    """A file name as it can be printed (names that are not UTF-8 keep their bytes
    as escapes instead of failing the terminal's encoding)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def jsonable(value: Any) -> Any:
    """A decoded MessagePack value as JSON can hold it: binary as base64 text, map
    keys as text, anything else as its str()."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(jsonable(k)): jsonable(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def entry_text(e: Entry) -> str:
    """How an entry's message reads on a terminal."""
    if e.media_type in ("application/x-msgpack", "application/x-msgpack-compressed"):
        try:
            env = e.envelope()
        except ProtocolError:
            return repr(e.message)
        if isinstance(env, Publish):
            return env.data if isinstance(env.data, str) else json.dumps(jsonable(env.data))
        return json.dumps(jsonable(env._asdict()))
    try:
        return e.message.decode("utf-8")
    except UnicodeDecodeError:
        return repr(e.message)


def entry_json(e: Entry) -> Dict[str, Any]:
    return {"id": e.id, "media_type": e.media_type, "instance": e.instance,
            "timestamp": e.timestamp, "text": entry_text(e),
            "message_base64": base64.b64encode(e.message).decode("ascii")}


def print_entry(e: Entry) -> None:
    print(f"{e.id}\t{e.media_type or '-'}\t{entry_text(e)}", flush=True)


# -- subcommands

def cmd_write(args: argparse.Namespace) -> int:
    d = ipc_directory(args)
    message = message_arg(args.message, "MESSAGE")
    with open_channel(args, d, args.name) as ch:
        r = ch.write(message, media_type=args.media_type) if args.media_type is None \
            else ch.write(message.encode("utf-8"), media_type=args.media_type)
    print(r.id)
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    d = ipc_directory(args, create=False)
    with existing_channel(args, d, args.name) as ch:
        r = ch.read(args.last_id)
    if r.reset:
        print(f"# the log's last id is {r.last_id}, below --last-id {args.last_id}: it "
              "went back (reset by a peer, or made anew); showing it from its start",
              file=sys.stderr)
    if args.json:
        print(json.dumps({"last_id": r.last_id, "missed": r.missed, "reset": r.reset,
                          "entries": [entry_json(e) for e in r.entries]}, indent=2))
    else:
        for e in r.entries:
            print_entry(e)
        print(f"# last_id {r.last_id}, {len(r.entries)} entries"
              + (f", {r.missed} missed" if r.missed else ""), file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    d = ipc_directory(args, create=False)
    with existing_channel(args, d, args.name) as ch, \
            ch.subscribe(args.last_id, missed="count", durable=args.durable) as sub:
        how = " as a declared subscriber" if args.durable else ""
        print(f"# following {args.name!r} in {d} after id {sub.last_id}{how} (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        missed = resets = 0
        while deadline is None or time.monotonic() < deadline:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            e = sub.get(1.0 if left is None else min(1.0, left))
            if sub.resets != resets:
                resets = sub.resets
                print(f"# the log went back to id {sub.last_id} (reset by a peer, or made "
                      "anew): following it from its start", file=sys.stderr, flush=True)
            if sub.missed != missed:
                print(f"# missed {sub.missed - missed} entries (trimmed before they were read)",
                      file=sys.stderr, flush=True)
                missed = sub.missed
            if e is not None:
                print_entry(e)
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    d = ipc_directory(args)
    data: Any = message_arg(args.data, "DATA")
    if args.json_data:
        try:
            data = json.loads(data)
        except ValueError as e:
            raise UserError(f"--json: DATA is not JSON: {e}", EXIT_USAGE) from None
    if args.client_id is not None:
        validate_name(args.client_id, "client id")
    c = Client(args.channel, ipc_directory=d, client_id=args.client_id, timeout=args.timeout,
               mode=args.mode)
    try:
        print(c.invoke(args.method, data))
    finally:
        c.close()
        if args.client_id is None:
            # a one-off client id: its eight files would wait 5 minutes for a scavenger
            for name in (c.request_name, c.response_name):
                for suffix in SUFFIXES:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(d, f"tiga_{name}{suffix}"))
    return 0


def echo_handler(method: str, data: Any, ctx: InvokeContext) -> Any:
    """The built-in handler: answers every method with the data it was given."""
    return data


def load_handler(spec: str) -> Callable[..., Any]:
    if spec == "echo":
        return echo_handler
    if ":" not in spec:
        raise UserError(f"--handler {spec!r}: expected module:function or 'echo'", EXIT_USAGE)
    mod_name, _, func_name = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"--handler {spec!r}: cannot import {mod_name!r}: {e}") from None
    fn = getattr(mod, func_name, None)
    if not callable(fn):
        raise UserError(f"--handler {spec!r}: {mod_name} has no function {func_name!r}")
    return cast(Callable[..., Any], fn)


def cmd_serve(args: argparse.Namespace) -> int:
    d = ipc_directory(args)
    sys.path.insert(0, os.getcwd())  # handler modules next to where tiga runs
    handler = load_handler(args.handler)

    def on_error(err: BaseException, ctx: Any) -> None:
        print(f"# {ctx.stage} error (client {ctx.client_id}): {err}", file=sys.stderr, flush=True)

    server = TigaServer(args.channel, d, handler, on_error,
                        discovery_interval=args.discovery_interval, mode=args.mode)
    stop = lambda *_: server.close()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    with server:
        print(f"serving {args.channel!r} in {d} (pid {os.getpid()}); Ctrl-C stops",
              file=sys.stderr, flush=True)
        if args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write(str(os.getpid()))
        server.serve_forever()
    return 0


def channel_names(d: str) -> List[str]:
    names = []
    for fn in sorted(os.listdir(d)):
        if fn.startswith("tiga_") and fn.endswith("_state"):
            names.append(fn[len("tiga_"):-len("_state")])
    return names


def cmd_ls(args: argparse.Namespace) -> int:
    d = ipc_directory(args, create=False)
    rows = []
    for name in channel_names(d):
        row: Dict[str, Any] = {"name": shown(name)}
        if not all(os.path.exists(os.path.join(d, f"tiga_{name}{s}")) for s in SUFFIXES):
            row["error"] = "incomplete: some of the four files are missing"
        else:
            try:  # a bad channel is reported in its row, and the listing goes on
                with open_channel(args, d, name, create_dir=False) as ch:
                    info = ch.info()
                row.update(last_id=info.last_id, retained=info.retained,
                           payload=info.payload_len, capacity=info.capacity,
                           listeners=info.live_listeners)
            except (TigaError, OSError, MemoryError, ValueError) as e:
                row["error"] = shown(str(e))
        rows.append(row)
    if args.json:
        print(json.dumps({"directory": d, "channels": rows}, indent=2))
        return 0
    if not rows:
        print(f"no channels in {d}")
        return 0
    width = max(len("NAME"), *(len(r["name"]) for r in rows))
    print(f"{'NAME':<{width}}  {'LAST ID':>8}  {'RETAINED':>8}  {'PAYLOAD / CAPACITY':>20}  "
          f"{'LISTENERS':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<{width}}  {r['error']}")
            continue
        size = f"{r['payload']} / {r['capacity']}"
        print(f"{r['name']:<{width}}  {r['last_id']:>8}  {r['retained']:>8}  {size:>20}  "
              f"{r['listeners']:>9}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    d = ipc_directory(args)
    channel = "tiga-demo"
    files: List[str] = []
    server = subprocess.Popen(
        [sys.executable, "-m", "tiga_cffi", "--dir", d, "serve", channel, "--handler", "echo",
         "--discovery-interval", "0.1"],
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=d)  # not the caller's folder: a source checkout there would shadow the install
    try:
        print(f"started an echo server in process {server.pid}")
        with Client(channel, ipc_directory=d, timeout=args.timeout) as c:
            t0 = time.perf_counter()
            reply = c.invoke("echo", "hello from tiga")
            first = time.perf_counter() - t0
            samples = []
            for i in range(200):
                t0 = time.perf_counter()
                c.invoke("echo", f"ping {i}")
                samples.append(time.perf_counter() - t0)
            samples.sort()
            print(f"reply: {reply!r}")
            print(f"first invoke (server start-up included): {first * 1000:.1f} ms")
            print(f"round trip over 200 invokes: median {samples[100] * 1e6:.0f} us, "
                  f"p99 {samples[197] * 1e6:.0f} us")
            print(f"files: {d}{os.sep}tiga_{channel}.req|resp.{c.client_id}_* "
                  "(removed again when the demo ends)")
            files = [os.path.join(d, f"tiga_{name}{s}") for name in (c.request_name,
                                                                      c.response_name)
                     for s in SUFFIXES]
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    for f in files:
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass
    print("server stopped")
    return 0


# -- the parser

def positive(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def add_global_options(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--dir", default=default, help="the shared IPC directory")
    p.add_argument("--mode", type=file_mode, default=default,
                   help="permission bits of files (and directories) a command creates, in "
                        "octal (default 600: yours alone; 660 shares with your group)")


def _sub_parser(common: argparse.ArgumentParser) -> Any:
    class SubParser(argparse.ArgumentParser):
        def __init__(self, *a: Any, **kw: Any) -> None:
            kw.setdefault("parents", []).append(common)
            super().__init__(*a, **kw)
    return SubParser


def file_mode(value: str) -> int:
    try:
        mode = int(value, 8)
        return check_mode(mode)
    except (ValueError, TigaError):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an octal file mode that lets you read and write "
            "(such as 600 or 660)") from None


def non_negative_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiga",
        description="Tiga memory-mapped IPC channels from the command line.",
        epilog="The directory is --dir, else $TIGA_IPC_DIR, else " + default_directory())
    p.add_argument("--version", action="version", version=f"tiga_cffi {__version__}")
    add_global_options(p, argparse.SUPPRESS)
    p.set_defaults(dir=None, mode=0o600)
    # the same options after the subcommand: `tiga ls --dir D` as well as `tiga --dir D ls`
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_sub_parser(common))
    sub.required = True

    s = sub.add_parser("demo", help="start an echo server in another process and invoke it")
    s.add_argument("--timeout", type=positive, default=30.0, help="seconds (default 30)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("write", help="append a message to a channel (created if missing)")
    s.add_argument("name")
    s.add_argument("message", help="the text; '-' reads standard input, '@FILE' a file")
    s.add_argument("--media-type", help="store MESSAGE as UTF-8 bytes with this media type "
                   "(without it: a publish envelope, like the peers' write of a string)")
    s.set_defaults(func=cmd_write)

    s = sub.add_parser("read", help="print a channel's entries")
    s.add_argument("name")
    s.add_argument("--last-id", type=non_negative_int, default=0,
                   help="only entries after this id")
    s.add_argument("--json", action="store_true", help="JSON output")
    s.set_defaults(func=cmd_read)

    s = sub.add_parser("tail", help="follow new entries as they arrive (Ctrl-C stops)")
    s.add_argument("name")
    s.add_argument("--last-id", type=non_negative_int, default=None,
                   help="start after this id (default: only new entries)")
    s.add_argument("--timeout", type=positive, default=None, help="stop after this many s")
    s.add_argument("--durable", action="store_true",
                   help="declare the subscriber: our writers keep what it has not read "
                        "(see README, \"Subscribe\")")
    s.set_defaults(func=cmd_tail)

    s = sub.add_parser("invoke", help="call METHOD on the server of CHANNEL")
    s.add_argument("channel")
    s.add_argument("method")
    s.add_argument("data", help="the text; '-' reads standard input, '@FILE' a file")
    s.add_argument("--json", dest="json_data", action="store_true",
                   help="send DATA parsed as JSON instead of as a string")
    s.add_argument("--client-id", help="client id (default: a new <pid>-<random> id whose "
                   "files are removed when the command ends)")
    s.add_argument("--timeout", type=positive, default=30.0, help="seconds (default 30)")
    s.set_defaults(func=cmd_invoke)

    s = sub.add_parser("serve", help="serve CHANNEL with a handler until stopped")
    s.add_argument("channel")
    s.add_argument("--handler", default="echo",
                   help="module:function called as f(method, data, context), or 'echo' "
                        "(the default)")
    s.add_argument("--discovery-interval", type=positive, default=1.0,
                   help="seconds between directory scans (default 1)")
    s.add_argument("--ready-file", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("ls", help="list the channels in the directory")
    s.add_argument("--json", action="store_true", help="JSON output")
    s.set_defaults(func=cmd_ls)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as e:
        print(f"tiga: error: {e}", file=sys.stderr)
        return e.code
    except (ServerNotReady, Timeout) as e:
        print(f"tiga: error: {e}", file=sys.stderr)
        return EXIT_TIMEOUT
    except RemoteError as e:
        print(f"tiga: the server answered with an error: {e}", file=sys.stderr)
        return EXIT_REMOTE
    except (InvalidName, InvalidType, InvalidArgument) as e:
        print(f"tiga: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except TigaError as e:
        print(f"tiga: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        print(f"tiga: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
