"""Only here because cffi's build hook (`cffi_modules`) has no pyproject.toml form."""

from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"])
