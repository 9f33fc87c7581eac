# The cffi extension built from native/ by native/build_ffi.py. Its functions are the
# C API declared in native/*.h; cffi objects carry no static types, so both are Any.
from typing import Any

ffi: Any
lib: Any
