"""A CLI that scripts can trust (issue 16): exit codes, no leftover files, no files or
directories made by commands that only look, input from stdin or a file, options after
the subcommand, errors that say what was wrong."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from platforms import WINDOWS, WINE, posix_only
from test_cli import default_sigint, run, stop, tiga_exe, wait_for

import tiga_cffi


@pytest.fixture
def echo_server(ipc_dir):
    def handler(method, data, ctx):
        if method == "key":
            return {}["b"]
        return data

    srv = tiga_cffi.start_tiga_server("svc", ipc_dir, handler, discovery_interval=0.1)
    try:
        yield srv
    finally:
        srv.close()


@posix_only("Ctrl-C as SIGINT sent to another process")
def test_an_interrupted_invoke_exits_130(ipc_dir):
    # no server: the invoke waits for its whole timeout unless interrupted
    p = subprocess.Popen([tiga_exe(), "--dir", str(ipc_dir), "invoke", "nobody", "m", "x",
                          "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd="/", preexec_fn=default_sigint)
    try:
        assert wait_for(lambda: list(ipc_dir.glob("tiga_nobody.req.*_state")))
        time.sleep(0.3)
    finally:
        out, err = stop(p)
    assert p.returncode == 130 and "Traceback" not in err


def test_a_one_off_invoke_leaves_no_files(ipc_dir, echo_server):
    assert run(ipc_dir, "invoke", "svc", "m", "hello", check_rc=0).stdout == "hello\n"
    if WINE:
        pytest.skip("wine keeps a deleted file visible while another process (the "
                    "server) has it open, and reports no pending deletion to that process")
    if WINDOWS:
        # Windows deletes a file when its last handle closes: the server's worker for
        # that client closes its handles when it sees the names gone (its next wait)
        deadline = time.monotonic() + 10
        while list(ipc_dir.glob("tiga_svc.*")) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not list(ipc_dir.glob("tiga_svc.*")), sorted(os.listdir(ipc_dir))
    # an explicit client id keeps its files (it is the caller's to reuse)
    run(ipc_dir, "invoke", "svc", "m", "again", "--client-id", "mine", check_rc=0)
    assert list(ipc_dir.glob("tiga_svc.req.mine_*"))


def test_message_from_stdin_and_from_a_file(ipc_dir, tmp_path, echo_server):
    big = "x" * 300_000  # over what one argument may hold on some systems
    p = subprocess.run([tiga_exe(), "--dir", str(ipc_dir), "write", "news", "-"],
                       input="from stdin", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    f = tmp_path / "msg.txt"
    f.write_text(big)
    run(ipc_dir, "write", "news", f"@{f}", check_rc=0)
    assert [e.text for e in tiga_cffi.tiga_read("news", ipc_directory=ipc_dir).entries] == [
        "from stdin", big]
    p = run(ipc_dir, "invoke", "svc", "m", f"@{f}", check_rc=0)
    assert p.stdout == big + "\n"
    p = run(ipc_dir, "write", "news", f"@{tmp_path / 'missing'}", check_rc=1)
    assert "No such file" in p.stderr


def test_global_options_after_the_subcommand(ipc_dir):
    p = subprocess.run([tiga_exe(), "write", "news", "x", "--dir", str(ipc_dir)],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    p = subprocess.run([tiga_exe(), "ls", "--dir", str(ipc_dir), "--json"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0 and '"news"' in p.stdout, p.stderr
    p = subprocess.run([tiga_exe(), "read", "news", "--mode", "640", "--dir", str(ipc_dir)],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr


def test_a_bad_client_id_is_called_a_client_id(ipc_dir):
    p = run(ipc_dir, "invoke", "svc", "m", "x", "--client-id", "../k", check_rc=2)
    assert "invalid client id '../k'" in p.stderr
    with pytest.raises(tiga_cffi.InvalidName, match="invalid client id"):
        tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="a/b")


def test_reading_past_the_last_id_says_so(ipc_dir):
    for i in range(3):
        run(ipc_dir, "write", "short", f"m{i}", check_rc=0)
    p = run(ipc_dir, "read", "short", "--last-id", "99", check_rc=0)
    assert "the log's last id is 3, below --last-id 99" in p.stderr
    assert len(p.stdout.splitlines()) == 3


def test_a_key_error_reaches_the_client_with_its_name(ipc_dir, echo_server):
    with tiga_cffi.Client("svc", ipc_directory=ipc_dir, client_id="k", timeout=10) as c:
        with pytest.raises(tiga_cffi.RemoteError) as ei:
            c.invoke("key", "")
    assert str(ei.value) == "KeyError: 'b'"


def test_commands_that_only_look_create_nothing(tmp_path):
    missing = tmp_path / "nonexistent" / "deep" / "x"
    for args in (["ls"], ["read", "news"], ["tail", "news", "--timeout", "0.1"]):
        p = subprocess.run([tiga_exe(), "--dir", str(missing), *args], capture_output=True,
                           text=True, timeout=60, cwd="/")
        assert p.returncode == 1 and "no directory" in p.stderr, (args, p.stderr)
        assert not (tmp_path / "nonexistent").exists()


def test_reading_a_missing_channel_creates_no_files(ipc_dir):
    r = tiga_cffi.tiga_read("ghost", ipc_directory=ipc_dir)
    assert r.entries == [] and r.last_id == 0 and not r.reset
    assert tiga_cffi.tiga_read("ghost", ipc_directory=ipc_dir, last_id=5).reset
    assert list(ipc_dir.iterdir()) == []


def test_the_package_logs_nothing_by_default_and_a_silent_failure_is_logged(ipc_dir,
                                                                           caplog):
    assert any(isinstance(h, logging.NullHandler)
               for h in logging.getLogger("tiga_cffi").handlers)

    def boom(method, data, ctx):
        raise RuntimeError("handler broke")

    with caplog.at_level(logging.ERROR, logger="tiga_cffi"), \
            tiga_cffi.start_tiga_server("lg", ipc_dir, boom, discovery_interval=0.1), \
            tiga_cffi.Client("lg", ipc_directory=ipc_dir, client_id="c", timeout=10) as c:
        with pytest.raises(tiga_cffi.RemoteError):
            c.invoke("m", "x")
    (rec,) = [r for r in caplog.records if "handler broke" in r.getMessage()]
    assert rec.levelno == logging.ERROR and rec.exc_info and "invoke" in rec.getMessage()


def test_a_source_tree_without_the_extension_says_what_to_do(tmp_path):
    src = tmp_path / "checkout" / "tiga_cffi"
    shutil.copytree(os.path.dirname(tiga_cffi.__file__), src,
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
                    copy_function=shutil.copyfile)  # (wine 8 lacks CopyFile2, which copy2 uses)
    # as `python -c` from the checkout's root finds it first (-S: without site's hooks,
    # an editable install in a development venv would find the built package instead)
    p = subprocess.run([sys.executable, "-S", "-c", "import tiga_cffi"], capture_output=True,
                       text=True, timeout=60, cwd=str(src.parent),
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert p.returncode != 0
    assert "C extension (tiga_cffi._tiga) is not built" in p.stderr
    assert "run from another directory" in p.stderr


@posix_only("Ctrl-C as SIGINT sent to another process")
def test_sigint_reaches_a_child_even_when_this_run_ignores_it(ipc_dir, tmp_path):
    """The suite may run as a background job, with SIGINT inherited as ignored: the
    children that tests interrupt get the default disposition back."""
    ready = tmp_path / "ready"
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        p = subprocess.Popen([tiga_exe(), "--dir", str(ipc_dir), "serve", "x",
                              "--ready-file", str(ready)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd="/", preexec_fn=default_sigint)
    finally:
        signal.signal(signal.SIGINT, old)
    try:
        assert wait_for(ready.exists)
    finally:
        out, err = stop(p, timeout=20)
    assert p.returncode == 130, err
