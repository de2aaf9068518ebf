"""cffi builder (API mode, out-of-line) for tiga_cffi._tiga.

The cdef is derived from csrc/include/tiga.h, the library's public header, so the
binding cannot drift from the C declarations. The sources are the library's
portable files plus the one platform file of the target (platform_posix.c or
platform_win32.c); build_settings() gives them with the flags, for setuptools here
and for the mingw-w64 build that .ci/windows makes for a Windows CPython.
"""

import re
import sys
from pathlib import Path

from cffi import FFI

CSRC = Path("csrc")  # relative paths: setuptools wants them, sdists need them
_NOT_C = re.compile(r"^\s*(#|TIGA_BEGIN_DECLS|TIGA_END_DECLS)")


def cdef_from_header(text):
    """Drop preprocessor lines and the export macro; plain C declarations remain."""
    lines = (ln for ln in text.replace("\\\n", " ").splitlines() if not _NOT_C.match(ln))
    return "\n".join(lines).replace("TIGA_API ", "")


def build_settings(target=None):
    """Sources, compile flags and libraries for target "posix", "msvc" (a Windows
    CPython's own compiler) or "mingw" (x86_64-w64-mingw32-gcc); by default the
    running interpreter's platform."""
    if target is None:
        target = "msvc" if sys.platform == "win32" else "posix"
    portable = [p for p in sorted((CSRC / "src").glob("*.c")) if not p.name.startswith("platform_")]
    plat = "platform_posix.c" if target == "posix" else "platform_win32.c"
    sources = [str(p) for p in portable] + [str(CSRC / "src" / plat)]
    if target == "posix":
        flags = ["-std=c11", "-D_GNU_SOURCE", "-O2", "-fvisibility=hidden"]
        libs = ["pthread"]
    elif target == "msvc":
        # C11 atomics are behind a switch in MSVC 17.5+
        flags = ["/std:c11", "/experimental:c11atomics", "/O2"]
        libs = ["bcrypt", "advapi32"]
    else:
        flags = ["-std=c11", "-O2"]
        libs = ["bcrypt", "advapi32"]
    return {"sources": sources, "extra_compile_args": flags, "libraries": libs}


ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header((CSRC / "include" / "tiga.h").read_text()))
ffibuilder.set_source(
    "tiga_cffi._tiga",
    '#include "tiga.h"',
    include_dirs=[str(CSRC / "include")],
    **build_settings(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
