"""The binding is generated from the public header, not a second copy."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_builder():
    spec = importlib.util.spec_from_file_location("build_ffi", ROOT / "build_ffi.py")
    mod = importlib.util.module_from_spec(spec)
    return spec, mod


def test_cdef_from_header_keeps_declarations_only():
    import os

    spec, mod = load_builder()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        spec.loader.exec_module(mod)
    finally:
        os.chdir(cwd)
    text = (ROOT / "csrc" / "include" / "tiga.h").read_text()
    cdef = mod.cdef_from_header(text)
    assert "#" not in cdef
    assert "TIGA_API" not in cdef
    assert "int tiga_channel_append(" in cdef
    assert "TIGA_BEGIN_DECLS" not in cdef


def test_every_header_function_is_bound():
    import re

    from tiga_cffi._tiga import lib

    text = (ROOT / "csrc" / "include" / "tiga.h").read_text()
    names = re.findall(r"TIGA_API [^;(]*?\b(tiga_\w+)\(", text)
    assert len(names) > 20
    for n in names:
        assert hasattr(lib, n), n


def test_the_version_is_written_once():
    """tiga.h holds it; the package, its metadata, the C library and the Makefile agree."""
    import importlib.metadata
    import re
    import subprocess

    import tiga_cffi
    from tiga_cffi._tiga import ffi, lib

    text = (ROOT / "csrc" / "include" / "tiga.h").read_text()
    header = re.search(r'#define TIGA_VERSION_STRING "([^"]+)"', text).group(1)
    major, minor, patch = (int(re.search(rf"#define TIGA_VERSION_{k} (\d+)", text).group(1))
                           for k in ("MAJOR", "MINOR", "PATCH"))
    assert header == f"{major}.{minor}.{patch}"
    assert tiga_cffi.__version__ == header
    assert ffi.string(lib.tiga_version()).decode() == header
    assert importlib.metadata.version("tiga-cffi") == header
    if sys.platform != "win32":  # (no make on Windows)
        make = subprocess.run(["make", "-s", "-C", str(ROOT / "csrc"), "print-version"],
                              capture_output=True, text=True, timeout=60)
        assert make.stdout.strip() == header
    assert "0.1.0" not in (ROOT / "pyproject.toml").read_text()  # no second copy


def test_every_public_name_has_a_docstring():
    import inspect

    import tiga_cffi

    missing = []
    for name in tiga_cffi.__all__:
        obj = getattr(tiga_cffi, name)
        if inspect.isroutine(obj) or inspect.isclass(obj):
            if not (obj.__doc__ or "").strip():
                missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(value)
                                                or isinstance(value, property)):
                    continue
                if not (value.__doc__ or "").strip():
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_the_metadata():
    """An SPDX licence, the Python versions of the matrix, project URLs."""
    import importlib.metadata

    meta = importlib.metadata.metadata("tiga-cffi")
    assert meta.get("License-Expression") == "MIT"
    classifiers = meta.get_all("Classifier") or []
    for v in ("3.9", "3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {v}" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # SPDX replaces them
    assert meta.get_all("Project-URL")
    assert meta.get("Requires-Python") == ">=3.9"
