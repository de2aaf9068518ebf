"""libtiga reused from C: the example program against the Python side, both ways,
and `make install` with its pkg-config file."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from platforms import posix_only

import tiga_cffi

CSRC = Path(__file__).resolve().parent.parent / "csrc"


NEEDS_MAKE = posix_only("make and gcc build the C library here; under wine its tests run as "
                        ".exe (make -C csrc test-windows)")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.fail("make and a C compiler are needed to build libtiga")
    out = tmp_path_factory.mktemp("cbuild")
    p = subprocess.run(["make", "-C", str(CSRC), f"BUILD={out}", "all"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return out


def example(build, *args):
    p = subprocess.run([str(build / "tiga-example"), *args], capture_output=True, text=True,
                       timeout=60)
    return p


@NEEDS_MAKE
def test_c_writes_python_reads(build, ipc_dir):
    p = example(build, str(ipc_dir), "from-c", "write", "hello from C", "text/plain")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1"
    example(build, str(ipc_dir), "from-c", "write", "second")
    r = tiga_cffi.tiga_read("from-c", ipc_directory=ipc_dir)
    assert [(e.id, e.message, e.media_type) for e in r.entries] == [
        (1, b"hello from C", "text/plain"), (2, b"second", None)]


@NEEDS_MAKE
def test_python_writes_c_reads(build, ipc_dir):
    tiga_cffi.tiga_write("from-py", b"raw bytes", ipc_directory=ipc_dir, media_type="text/x")
    tiga_cffi.tiga_write("from-py", b"more", ipc_directory=ipc_dir)
    p = example(build, str(ipc_dir), "from-py", "read")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["last_id 2 missed 0", "1\ttext/x\traw bytes", "2\t-\tmore"]
    p = example(build, str(ipc_dir), "from-py", "read", "1")
    assert p.stdout.splitlines() == ["last_id 2 missed 0", "2\t-\tmore"]


@NEEDS_MAKE
def test_c_errors_are_reported(build, ipc_dir):
    p = example(build, str(ipc_dir), "../bad", "read")
    assert p.returncode == 1 and "invalid channel name" in p.stderr
    p = example(build, str(ipc_dir))
    assert p.returncode == 2 and "usage" in p.stderr


@NEEDS_MAKE
def test_make_install_and_pkg_config(build, tmp_path):
    prefix = tmp_path / "prefix"
    p = subprocess.run(["make", "-C", str(CSRC), f"BUILD={build}", "install",
                        f"PREFIX={prefix}"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    for f in ("include/tiga.h", "lib/libtiga.a", "lib/libtiga.so", "lib/libtiga.so.0",
              "lib/pkgconfig/tiga.pc", "bin/tiga-example"):
        assert (prefix / f).exists(), f
    pc = (prefix / "lib/pkgconfig/tiga.pc").read_text()
    assert f"prefix={prefix}" in pc and "-ltiga" in pc
    prog = tmp_path / "use.c"
    prog.write_text(
        '#include <stdio.h>\n#include <tiga.h>\n'
        'int main(void) {\n'
        '    printf("%016llx %s\\n", (unsigned long long)tiga_wyhash("abc", 3, 0),\n'
        '           tiga_strerror(TIGA_EFULL));\n'
        '    return 0;\n}\n')
    if shutil.which("pkg-config"):
        env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "tiga"], capture_output=True,
                               text=True, env=env, check=True).stdout.split()
    else:  # the same flags, read from the .pc file's promise
        flags = [f"-I{prefix}/include", f"-L{prefix}/lib", "-ltiga"]
    exe = tmp_path / "use"
    c = subprocess.run(["cc", str(prog), "-o", str(exe), *flags], capture_output=True, text=True)
    assert c.returncode == 0, c.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True,
                       env=dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib")))
    assert r.stdout.strip() == "b4808df22d44ffcf channel full"


def test_header_documents_every_function():
    text = (CSRC / "include" / "tiga.h").read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("TIGA_API"):
            above = "\n".join(lines[max(0, i - 3):i])
            assert "*/" in above, f"undocumented: {line}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
