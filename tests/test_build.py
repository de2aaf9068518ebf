"""The binding is generated from the public header, not a second copy."""

import importlib.util
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
