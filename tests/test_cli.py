"""The `tiga` command, run as a subprocess like a user would."""

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from platforms import WINDOWS, WINE, posix_only

import tiga_cffi

# where the installer put the `tiga` script: next to python on POSIX, in Scripts\
# as tiga.exe on Windows
BIN = Path(sysconfig.get_path("scripts"))
EXE = "tiga.exe" if os.name == "nt" else "tiga"


def default_sigint():
    """For a child that must see Ctrl-C even when this run inherited SIGINT as ignored
    (a background job): Python leaves an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(proc, sig=signal.SIGINT, timeout=20):
    """Send sig, wait, and kill it if it does not end: nothing outlives its test."""
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def tiga_exe():
    exe = BIN / EXE
    assert exe.exists(), f"the tiga script is not installed next to {sys.executable}"
    return str(exe)


# wine now and then fails to start a process at all (its loader's DLL init, before
# any of our code runs): exit code 0xC0000142 and no output
STATUS_DLL_INIT_FAILED = 0xC0000142


def run(ipc_dir, *args, timeout=60, env=None, check_rc=None):
    cmd = [tiga_exe()] + (["--dir", str(ipc_dir)] if ipc_dir is not None else []) + list(args)
    for _ in range(3):  # (only a process that never started is started again)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           cwd=str(ipc_dir.parent if ipc_dir else "/"), env=env)
        if not (WINE and p.returncode == STATUS_DLL_INIT_FAILED and not p.stdout
                and not p.stderr):
            break
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout, p.stderr)
    return p


def test_help_everywhere(ipc_dir):
    for sub in ([], ["demo"], ["write"], ["read"], ["tail"], ["invoke"], ["serve"], ["ls"]):
        p = run(None, *sub, "--help", check_rc=0)
        assert "usage: tiga" in p.stdout


def test_write_read_json_and_ls(ipc_dir):
    assert run(ipc_dir, "write", "news", "hello", check_rc=0).stdout.strip() == "1"
    assert run(ipc_dir, "write", "news", "plain", "--media-type", "text/plain",
               check_rc=0).stdout.strip() == "2"
    p = run(ipc_dir, "read", "news", check_rc=0)
    assert p.stdout.splitlines() == ["1\tapplication/x-msgpack\thello", "2\ttext/plain\tplain"]
    data = json.loads(run(ipc_dir, "read", "news", "--last-id", "1", "--json",
                          check_rc=0).stdout)
    assert data["last_id"] == 2 and [e["text"] for e in data["entries"]] == ["plain"]
    # the CLI and the library agree
    assert tiga_cffi.tiga_read("news", ipc_directory=ipc_dir).entries[0].text == "hello"
    p = run(ipc_dir, "ls", check_rc=0)
    assert "news" in p.stdout and "LAST ID" in p.stdout
    listing = json.loads(run(ipc_dir, "ls", "--json", check_rc=0).stdout)
    (row,) = listing["channels"]
    assert row["name"] == "news" and row["last_id"] == 2 and row["retained"] == 2
    assert row["capacity"] == 1048576 and row["listeners"] == 0


def test_environment_variable_chooses_the_directory(ipc_dir):
    env = dict(os.environ, TIGA_IPC_DIR=str(ipc_dir))
    p = subprocess.run([tiga_exe(), "write", "envchan", "x"], capture_output=True, text=True,
                       env=env, timeout=60, cwd="/")
    assert p.returncode == 0
    assert (ipc_dir / "tiga_envchan_state").exists()


def test_user_errors_have_no_traceback(ipc_dir):
    cases = [
        (("read", "missing"), 1, "no channel 'missing'"),
        (("write", "../x", "m"), 2, "path separator"),
        (("read", "news", "--last-id", "-3"), 2, "must not be negative"),
        (("invoke", "nobody", "m", "d", "--timeout", "0.3"), 3, "server not ready"),
        (("serve", "svc", "--handler", "nosuchmodule:f"), 1, "cannot import"),
        (("invoke", "c", "m", "{bad", "--json"), 2, "not JSON"),
        (("bogus",), 2, "invalid choice"),
    ]
    for args, code, text in cases:
        p = run(ipc_dir, *args)
        assert p.returncode == code, (args, p.stdout, p.stderr)
        assert text in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr


def test_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    p = subprocess.run([tiga_exe(), "--dir", str(f), "ls"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "not a directory" in p.stderr and "Traceback" not in p.stderr


def wait_for(pred, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_serve_invoke_and_remote_error(ipc_dir, tmp_path):
    handler = tmp_path / "myhandlers.py"
    handler.write_text(
        "def handle(method, data, ctx):\n"
        "    if method == 'boom':\n"
        "        raise RuntimeError('it broke')\n"
        "    return {'method': method, 'data': data, 'client': ctx.client_id}\n")
    ready = tmp_path / "ready"
    srv = subprocess.Popen([tiga_exe(), "--dir", str(ipc_dir), "serve", "svc", "--handler",
                            "myhandlers:handle", "--discovery-interval", "0.1",
                            "--ready-file", str(ready)],
                           cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        assert wait_for(ready.exists)
        p = run(ipc_dir, "invoke", "svc", "m", "payload", "--client-id", "cli1", check_rc=0)
        assert json.loads(p.stdout) == {"method": "m", "data": "payload", "client": "cli1"}
        p = run(ipc_dir, "invoke", "svc", "m", '{"a": [1, 2]}', "--json", check_rc=0)
        assert json.loads(p.stdout)["data"] == {"a": [1, 2]}
        p = run(ipc_dir, "invoke", "svc", "boom", "x", check_rc=4)
        assert "it broke" in p.stderr
    finally:
        out, err = stop(srv, signal.SIGTERM)  # on Windows: TerminateProcess
    if not WINDOWS:
        assert srv.returncode == 0, err  # SIGTERM stops it as Ctrl-C does
    assert "Traceback" not in err


@posix_only("Ctrl-C as SIGINT sent to another process")
def test_serve_builtin_echo_and_ctrl_c(ipc_dir, tmp_path):
    ready = tmp_path / "ready"
    srv = subprocess.Popen([tiga_exe(), "--dir", str(ipc_dir), "serve", "echo",
                            "--ready-file", str(ready)], cwd=str(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=default_sigint)
    out = err = ""
    try:
        assert wait_for(ready.exists)
        assert run(ipc_dir, "invoke", "echo", "any", "text", check_rc=0).stdout == "text\n"
    finally:
        out, err = stop(srv)
    assert srv.returncode == 130 and "Traceback" not in err  # interrupted: 128 + SIGINT


@posix_only("Ctrl-C as SIGINT sent to another process")
def test_tail_follows_and_stops_on_ctrl_c(ipc_dir):
    run(ipc_dir, "write", "feed", "old", check_rc=0)
    tail = subprocess.Popen([tiga_exe(), "--dir", str(ipc_dir), "tail", "feed"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            preexec_fn=default_sigint)
    lines = []
    out = err = ""
    try:
        time.sleep(1.0)  # let it start following
        for i in range(3):
            tiga_cffi.tiga_write("feed", f"new {i}", ipc_directory=ipc_dir)
        deadline = time.monotonic() + 20
        while len(lines) < 3 and time.monotonic() < deadline:
            line = tail.stdout.readline()
            if line:
                lines.append(line.rstrip("\n"))
    finally:
        out, err = stop(tail)
    assert [ln.split("\t")[2] for ln in lines] == ["new 0", "new 1", "new 2"]
    assert tail.returncode == 130 and "Traceback" not in err


def test_tail_with_timeout_and_last_id(ipc_dir):
    for i in range(3):
        run(ipc_dir, "write", "t2", f"m{i}", check_rc=0)
    p = run(ipc_dir, "tail", "t2", "--last-id", "1", "--timeout", "0.5", check_rc=0)
    assert [ln.split("\t")[2] for ln in p.stdout.splitlines()] == ["m1", "m2"]


def test_tail_as_a_declared_subscriber_misses_nothing(ipc_dir):
    """tail --durable: a writer whose min_age keeps only its newest entry keeps what
    the tail has not read yet."""
    tiga_cffi.Channel("t3", ipc_directory=ipc_dir).close()
    tail = subprocess.Popen([tiga_exe(), "--dir", str(ipc_dir), "tail", "t3", "--durable",
                             "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert "declared subscriber" in tail.stderr.readline()
        with tiga_cffi.Channel("t3", ipc_directory=ipc_dir, min_age=0, read_min_age=0) as ch:
            assert ch.info().subscribers == 1
            for i in range(200):
                ch.write(f"m{i}".encode())
        lines = []
        deadline = time.monotonic() + 20
        while len(lines) < 200 and time.monotonic() < deadline:
            line = tail.stdout.readline()
            if line:
                lines.append(line.rstrip("\n").split("\t")[2])
    finally:
        tail.kill()
        out, err = tail.communicate(timeout=20)
    assert lines == [f"m{i}" for i in range(200)]
    assert "missed" not in err


def test_demo(tmp_path):
    d = tmp_path / "demo-ipc"
    p = subprocess.run([tiga_exe(), "--dir", str(d), "demo"], capture_output=True, text=True,
                       timeout=120, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "reply: 'hello from tiga'" in p.stdout
    assert "round trip" in p.stdout and "server stopped" in p.stdout
    assert list(d.glob("tiga_tiga-demo.*")) == []  # the demo cleans up after itself


def test_demo_default_directory_is_private(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("TIGA_IPC_DIR", None)
    env.pop("XDG_RUNTIME_DIR", None)
    p = subprocess.run([tiga_exe(), "demo"], capture_output=True, text=True, timeout=120,
                       env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    (d,) = [x for x in tmp_path.iterdir() if x.name.startswith("tiga-ipc-")]
    if not WINDOWS:  # (Windows: no mode bits; %TEMP% is in the user's own profile)
        assert d.stat().st_mode & 0o777 == 0o700


def test_python_dash_m(ipc_dir):
    p = subprocess.run([sys.executable, "-m", "tiga_cffi", "--dir", str(ipc_dir), "write",
                        "m", "x"], capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0 and p.stdout.strip() == "1"


@pytest.mark.parametrize("flag", ["--version"])
def test_version(flag):
    p = run(None, flag, check_rc=0)
    assert "tiga_cffi" in p.stdout
