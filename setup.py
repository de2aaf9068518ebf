"""setuptools runs build_ffi.py through cffi_modules; the version comes from tiga.h,
where it is written once."""

import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext


def version() -> str:
    header = (Path(__file__).parent / "csrc" / "include" / "tiga.h").read_text()
    return re.search(r'#define TIGA_VERSION_STRING "([^"]+)"', header).group(1)


class BuildExt(build_ext):
    """The extension compiles libtiga's C sources: without a C compiler or the Python
    headers, say so instead of leaving a compiler's traceback."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # CompileError, DistutilsExecError, ... (class varies)
            raise SystemExit(
                "tiga-cffi: building its C extension failed. It needs a C compiler (gcc or "
                "clang: `apt-get install build-essential`, `dnf install gcc`, Xcode's "
                "command-line tools; on Windows the Build Tools for Visual Studio 2022, "
                "17.5 or later) and the Python headers (`apt-get install python3-dev`)."
                f"\nThe error was: {e}") from None


setup(version=version(), cffi_modules=["build_ffi.py:ffibuilder"],
      cmdclass={"build_ext": BuildExt},
      # one wheel per platform for every CPython from 3.9: the extension uses the
      # stable ABI (cffi builds it with Py_LIMITED_API, as _tiga.abi3.so)
      options={"bdist_wheel": {"py_limited_api": "cp39"}})
