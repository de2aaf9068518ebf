"""The `tiga` command against a hostile user and hostile files (issue 14, items 5, 6
and 10): a private default directory, links refused, no tracebacks."""

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import msgpack
import pytest
from conftest import install_payload
from platforms import posix_only
from test_cli import tiga_exe

import tiga_cffi


def tiga(*args, env=None, cwd="/"):
    return subprocess.run([tiga_exe(), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env)


@pytest.fixture
def shared_tmp():
    """A /tmp-like directory (sticky, world-writable) for the default directory."""
    d = tempfile.mkdtemp(prefix="tiga-tmp-")
    os.chmod(d, 0o1777)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def clean_env(tmp):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIGA_IPC_DIR", "XDG_RUNTIME_DIR")}
    env["TMPDIR"] = str(tmp)
    return env


@posix_only("uids and mode bits")
def test_the_default_directory_is_created_private(shared_tmp):
    old = os.umask(0)
    try:
        p = tiga("write", "news", "hello", env=clean_env(shared_tmp))
    finally:
        os.umask(old)
    assert p.returncode == 0, p.stderr
    d = shared_tmp / f"tiga-ipc-{os.getuid()}"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in d.iterdir())


@posix_only("$XDG_RUNTIME_DIR")
def test_xdg_runtime_dir_is_preferred(shared_tmp):
    runtime = shared_tmp / "run"
    runtime.mkdir(mode=0o700)
    env = dict(clean_env(shared_tmp), XDG_RUNTIME_DIR=str(runtime))
    assert tiga("write", "news", "hi", env=env).returncode == 0
    assert (runtime / "tiga-ipc" / "tiga_news_state").exists()


@posix_only("uids and mode bits")
@pytest.mark.parametrize("how", ["world-writable", "symlink"])
def test_a_default_directory_someone_else_prepared_is_refused(shared_tmp, how, tmp_path):
    d = shared_tmp / f"tiga-ipc-{os.getuid()}"
    if how == "symlink":
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", d)
    else:
        d.mkdir()
        os.chmod(d, 0o777)
    p = tiga("write", "news", "hello", env=clean_env(shared_tmp))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "refusing the default directory" in p.stderr
    assert ("symbolic link" if how == "symlink" else "lets other users write") in p.stderr
    assert not list((tmp_path / "elsewhere").glob("*")) if how == "symlink" else True


def _user(name):
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid, False
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        pytest.skip("no useradd to create a second user")
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/false",
                        name], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"useradd failed: {r.stderr!r}")
    return pwd.getpwnam(name).pw_uid, True


@posix_only("a second user (useradd)")
def test_two_users_a_planted_link_cannot_overwrite_the_victims_file(shared_tmp, tmp_path):
    """Another local user pre-creates the victim's default directory (mode 0777) with
    tiga_news_data_0 linked to the victim's ~/.bashrc; the victim runs
    `tiga write news hello` with no --dir. Before: .bashrc became a logbook."""
    if os.geteuid() != 0:
        pytest.skip("playing a second user needs root (setuid)")
    uid, created = _user("tiga-attacker")
    home = tmp_path / "home"
    home.mkdir()
    bashrc = home / ".bashrc"
    bashrc.write_text("export PS1='$ '\n")
    victim_dir = shared_tmp / f"tiga-ipc-{os.getuid()}"
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the attacker, reporting through its exit code
            code = 1
            try:
                os.setgid(65534)
                os.setuid(uid)
                os.mkdir(victim_dir)
                os.chmod(victim_dir, 0o777)
                os.symlink(bashrc, victim_dir / "tiga_news_data_0")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, "the attacker could not prepare the directory"
        assert victim_dir.stat().st_uid == uid
        p = tiga("write", "news", "hello", env=clean_env(shared_tmp))
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        assert f"belongs to uid {uid}" in p.stderr
        assert bashrc.read_text() == "export PS1='$ '\n"
        # even in a directory given on purpose, the link itself is refused
        p = tiga("--dir", str(victim_dir), "write", "news", "hello")
        assert p.returncode != 0 and "symbolic link" in p.stderr, p.stderr
        assert bashrc.read_text() == "export PS1='$ '\n"
    finally:
        shutil.rmtree(victim_dir, ignore_errors=True)
        if created:
            subprocess.run(["userdel", "tiga-attacker"], capture_output=True)


@posix_only("mode bits")
def test_mode_option_shares_with_a_group(ipc_dir):
    d = ipc_dir / "grp"
    p = tiga("--dir", str(d), "--mode", "660", "write", "news", "x")
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(d.stat().st_mode) == 0o770
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o660 for f in d.iterdir())
    p = tiga("--dir", str(d), "--mode", "9", "write", "news", "x")
    assert p.returncode == 2 and "octal file mode" in p.stderr


# -- 10. no tracebacks

def test_read_and_tail_a_publish_with_binary_map_keys(ipc_dir):
    env = msgpack.packb(["6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab", 0, {b"k": b"\x00\x01", 1: [b"x"]}])
    entry = [1, "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab", 1, env, "application/x-msgpack"]
    with tiga_cffi.Channel("bin", ipc_directory=ipc_dir):
        pass
    install_payload(ipc_dir, "bin", msgpack.packb([1, [entry]], use_bin_type=True))
    p = tiga("--dir", str(ipc_dir), "read", "bin")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert '"base64": "AAE="' in p.stdout
    p = tiga("--dir", str(ipc_dir), "read", "bin", "--json")
    assert p.returncode == 0, p.stderr
    json.loads(p.stdout)
    p = tiga("--dir", str(ipc_dir), "tail", "bin", "--last-id", "0", "--timeout", "0.3")
    assert p.returncode == 0 and "AAE=" in p.stdout, p.stderr


@posix_only("file names that are not Unicode")
def test_ls_with_a_file_name_that_is_not_utf8(ipc_dir):
    tiga_cffi.tiga_write("good", b"x", ipc_directory=ipc_dir)
    with open(os.path.join(os.fsencode(ipc_dir), b"tiga_bad\xff_state"), "wb") as f:
        f.write(bytes(16))
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    for args in (["ls"], ["ls", "--json"]):
        p = tiga("--dir", str(ipc_dir), *args, env=env)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert "good" in p.stdout and "bad" in p.stdout
    p = subprocess.run([tiga_exe(), "--dir", str(ipc_dir), "ls"], capture_output=True,
                       timeout=60, env=dict(os.environ, PYTHONIOENCODING="ascii"))
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr


def test_ls_goes_on_past_a_bad_channel(ipc_dir):
    tiga_cffi.tiga_write("fine", b"x", ipc_directory=ipc_dir)
    with tiga_cffi.Channel("broken", ipc_directory=ipc_dir):
        pass
    install_payload(ipc_dir, "broken", b"\x92\x05\xdd\xff\xff\xff\xff")
    for f in ("tiga_huge_state", "tiga_huge_notify"):
        (ipc_dir / f).write_bytes(bytes(16 if f.endswith("state") else 3072))
    for f in ("tiga_huge_data_0", "tiga_huge_data_1"):
        with open(ipc_dir / f, "wb") as fh:
            fh.truncate(100 << 30)
    p = tiga("--dir", str(ipc_dir), "ls", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)["channels"]}
    assert rows["fine"]["last_id"] == 1
    assert "claims 4294967295 entries" in rows["broken"]["error"]
    assert rows["huge"]["capacity"] == 1 << 30 and rows["huge"]["last_id"] == 0

