# The cffi extension module (built by build_ffi.py from csrc/include/tiga.h). Its
# objects are cffi's: a binding to C declarations that a stub cannot spell out
# further; the Python layer converts every value it returns.
from typing import Any

ffi: Any
lib: Any
