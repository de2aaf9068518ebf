"""Pack tiga_cffi with a cross-built _tiga.pyd into a win_amd64 abi3 wheel.

Used by .ci/windows: the Windows CPython under wine then installs it with pip,
which makes the `tiga` launcher (Scripts\\tiga.exe) as for any user. The wheel
carries the same files and metadata a real (MSVC, cibuildwheel) build does.

    python .ci/winwheel.py PACKAGE_DIR PYD OUT_DIR
"""

import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path


def main(pkg: str, pyd: str, out: str) -> None:
    root = Path(__file__).resolve().parent.parent
    header = (root / "csrc" / "include" / "tiga.h").read_text()
    version = re.search(r'#define TIGA_VERSION_STRING "([^"]+)"', header).group(1)
    project = (root / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*)\]$", project, re.M).group(1)
    tag = "cp39-abi3-win_amd64"
    info = f"tiga_cffi-{version}.dist-info"
    files = {}
    for p in sorted(Path(pkg).rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".pyi", ".typed"):
            files[f"tiga_cffi/{p.relative_to(pkg).as_posix()}"] = p.read_bytes()
    files["tiga_cffi/_tiga.pyd"] = Path(pyd).read_bytes()
    meta = [f"Metadata-Version: 2.1", "Name: tiga_cffi", f"Version: {version}",
            "Requires-Python: >=3.9"]
    meta += [f"Requires-Dist: {d.strip().strip(chr(34))}" for d in deps.split(",")]
    files[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    files[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: tiga .ci/winwheel.py\n"
                              f"Root-Is-Purelib: false\nTag: {tag}\n").encode()
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\ntiga = tiga_cffi.cli:main\n"
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
