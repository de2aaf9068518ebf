"""The examples run as documented."""

import subprocess
import sys
import time
from pathlib import Path

import tiga_cffi

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def start(script, *args, cwd):
    return subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_echo_server_and_clients(ipc_dir, tmp_path):
    srv = start("echo_server.py", str(ipc_dir), cwd=str(tmp_path))
    try:
        assert "serving" in srv.stdout.readline()
        c = subprocess.run([sys.executable, str(EXAMPLES / "echo_client.py"), str(ipc_dir)],
                           capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert c.returncode == 0, c.stderr
        assert c.stdout.splitlines() == ["hello", "SHOUT",
                                         "remote error: asked to fail with 'on purpose'"]
        a = subprocess.run([sys.executable, str(EXAMPLES / "asyncio_client.py"), str(ipc_dir)],
                           capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert a.returncode == 0, a.stderr
        assert a.stdout.splitlines() == [f"call {i}" for i in range(5)]
    finally:
        srv.terminate()
        srv.communicate(timeout=20)


def test_asyncio_server(ipc_dir, tmp_path):
    srv = start("asyncio_server.py", str(ipc_dir), cwd=str(tmp_path))
    try:
        assert "serving" in srv.stdout.readline()
        with tiga_cffi.Client("reverse", ipc_directory=ipc_dir, timeout=20) as c:
            assert c.invoke("r", "stressed") == "desserts"
    finally:
        srv.terminate()
        srv.communicate(timeout=20)


def test_pubsub(ipc_dir, tmp_path):
    follower = start("pubsub.py", "follow", str(ipc_dir), "5", cwd=str(tmp_path))
    assert follower.stdout.readline().strip() == "following"
    time.sleep(0.2)
    pub = subprocess.run([sys.executable, str(EXAMPLES / "pubsub.py"), "publish", str(ipc_dir),
                          "5"], capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert pub.returncode == 0, pub.stderr
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out.splitlines() == [f"{i + 1}: headline {i}" for i in range(5)]
