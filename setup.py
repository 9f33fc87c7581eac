"""Only here because cffi's build hook (`cffi_modules`) has no pyproject.toml form.

Beside the cffi module, one small CPython extension: a ring's one-record push and pop
(native/ring_records.c says why), built with the same flags as the cffi module.
"""

import importlib.util
from pathlib import Path

from setuptools import Extension, setup

_spec = importlib.util.spec_from_file_location(
    "build_ffi", Path(__file__).resolve().parent / "native" / "build_ffi.py"
)
assert _spec is not None and _spec.loader is not None
_build_ffi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build_ffi)
_cflags, _ldflags = _build_ffi.compile_args()

setup(
    cffi_modules=["native/build_ffi.py:ffibuilder"],
    ext_modules=[
        Extension(
            "tradsys._ring_records",
            sources=["native/ring_records.c", "native/ring.c"],
            include_dirs=["native"],
            extra_compile_args=_cflags,
            extra_link_args=_ldflags,
        )
    ],
)
