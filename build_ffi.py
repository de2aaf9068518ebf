"""cffi builder (API mode, out-of-line) for tiga_cffi._tiga.

The cdef is derived from csrc/include/tiga.h, the library's public header, so the
binding cannot drift from the C declarations.
"""

import re
from pathlib import Path

from cffi import FFI

CSRC = Path("csrc")  # relative paths: setuptools wants them, sdists need them
_NOT_C = re.compile(r"^\s*(#|TIGA_BEGIN_DECLS|TIGA_END_DECLS)")


def cdef_from_header(text):
    """Drop preprocessor lines and the export macro; plain C declarations remain."""
    lines = (ln for ln in text.replace("\\\n", " ").splitlines() if not _NOT_C.match(ln))
    return "\n".join(lines).replace("TIGA_API ", "")


ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header((CSRC / "include" / "tiga.h").read_text()))
ffibuilder.set_source(
    "tiga_cffi._tiga",
    '#include "tiga.h"',
    sources=[str(p) for p in sorted((CSRC / "src").glob("*.c"))],
    include_dirs=[str(CSRC / "include")],
    extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-O2", "-fvisibility=hidden"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
