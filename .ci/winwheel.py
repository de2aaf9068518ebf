"""Pack tiga_cffi with a cross-built _tiga.pyd into a win_amd64 abi3 wheel.

Used by .ci/windows: the Windows CPython under wine then installs it with pip,
which makes the `tiga` launcher (Scripts\\tiga.exe) as for any user. The wheel
carries the same files and metadata a real (MSVC, cibuildwheel) build does: the
metadata comes from setuptools (prepare_metadata_for_build_wheel), so run this with
a Python that has setuptools >= 77 and cffi.

    python .ci/winwheel.py PACKAGE_DIR PYD OUT_DIR
"""

import base64
import contextlib
import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path


def main(pkg: str, pyd: str, out: str) -> None:
    root = Path(__file__).resolve().parent.parent
    tag = "cp39-abi3-win_amd64"
    files = {}
    for p in sorted(Path(pkg).rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".pyi", ".typed"):
            files[f"tiga_cffi/{p.relative_to(pkg).as_posix()}"] = p.read_bytes()
    files["tiga_cffi/_tiga.pyd"] = Path(pyd).read_bytes()
    # the metadata as setuptools makes it for any wheel of this project
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(root)
        try:
            from setuptools import build_meta

            with contextlib.redirect_stdout(sys.stderr):  # stdout is the wheel's path
                info = build_meta.prepare_metadata_for_build_wheel(tmp)
        finally:
            os.chdir(cwd)
        for p in sorted((Path(tmp) / info).rglob("*")):
            if p.is_file() and p.name not in ("WHEEL", "RECORD"):
                files[f"{info}/{p.relative_to(Path(tmp) / info).as_posix()}"] = p.read_bytes()
    version = info[len("tiga_cffi-"):-len(".dist-info")]
    files[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: tiga .ci/winwheel.py\n"
                              f"Root-Is-Purelib: false\nTag: {tag}\n").encode()
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = Path(out) / f"tiga_cffi-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    print(wheel)


if __name__ == "__main__":
    main(*sys.argv[1:4])
