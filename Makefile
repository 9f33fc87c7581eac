# TradSys — every target makes its own virtual environment (.venv) on first use.
#   make run     run the engine with its built-in default configuration
#   make test    the C core's tests under AddressSanitizer/UBSan, then the Python suite
#   make bench   every perf/ benchmark against its peers (BENCH_ARGS=--quick for a look)
#   make lint    ruff (check + format check) and mypy
#   make debug   rebuild the extension with -O0 -g and ASan/UBSan (run with the ASan runtime preloaded)
#   make clean   remove the venv and every build product

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NATIVE_SOURCES := $(wildcard native/*.c native/*.h) native/build_ffi.py
BENCH_ARGS ?=

.PHONY: run test test-c test-py bench lint debug clean

$(STAMP): pyproject.toml setup.py $(NATIVE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tradsys run

test: test-c test-py

test-c:
	$(MAKE) -C native test-asan

test-py: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/tradsys bench all $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

debug: $(STAMP)
	TRADSYS_DEBUG=1 TRADSYS_SANITIZE=address,undefined $(PY) -m pip install --quiet --no-deps --force-reinstall -e .
	@echo "debug build installed; run Python with LD_PRELOAD=$$(gcc -print-file-name=libasan.so)"

clean:
	rm -rf $(VENV) build dist *.egg-info native/build tradsys/_native.*.so tradsys/_native.c tradsys/_ring_records.*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
