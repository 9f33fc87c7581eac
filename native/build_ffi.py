"""cffi build script: compiles native/*.c into the `tradsys._native` extension (API mode).

The declarations come from the project's headers themselves, not from strings kept
here, so a header is the single place a C signature or layout is written. Build
switches come from the environment, read once at build time:

    TRADSYS_DEBUG=1                      -O0 -g3 instead of -O2
    TRADSYS_SANITIZE=address,undefined   compile and link with those sanitizers
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
HEADERS = [
    "wire.h",
    "ring.h",
    "latency_hist.h",
    "book.h",
    "journal.h",
    "snapshot_file.h",
    "worker.h",
    "md_refresh.h",
    "order_image.h",
    "gateway.h",
    "gateway_latency.h",
    "huge_alloc.h",
    "jitter.h",
    "stall_watch.h",
]
SOURCES = [
    "ring.c",
    "book.c",
    "book_orders.c",
    "book_session.c",
    "book_snapshot.c",
    "order_index.c",
    "huge_alloc.c",
    "crc32c.c",
    "journal_common.c",
    "journal.c",
    "journal_read.c",
    "snapshot_file.c",
    "snapshot_writer.c",
    "snapshot_fork.c",
    "worker.c",
    "latency_hist.c",
    "md_refresh.c",
    "order_image.c",
    "gateway_ledger.c",
    "gateway_held.c",
    "gateway_owner.c",
    "gateway.c",
    "gateway_pump.c",
    "gateway_status.c",
    "gateway_latency.c",
    "risk.c",
    "jitter.c",
    "stall_watch.c",
]

_SIMPLE_DEFINE = re.compile(r"^#define\s+\w+\s+(0x[0-9a-fA-F]+|\d+)\s*$")


def declarations(header: Path) -> str:
    """A header's text with the preprocessor lines cffi's parser cannot read removed.

    Plain integer ``#define``s stay: cffi turns them into module constants.
    """
    kept = []
    for line in header.read_text().splitlines():
        if line.startswith("#") and not _SIMPLE_DEFINE.match(line):
            continue
        kept.append(line)
    return "\n".join(kept)


def compile_args() -> tuple[list[str], list[str]]:
    debug = os.environ.get("TRADSYS_DEBUG") == "1"
    cflags = ["-std=c11", "-Wall", "-Wextra", "-fno-strict-aliasing"]
    cflags += ["-O0", "-g3"] if debug else ["-O2", "-g"]
    cflags.append("-pthread")  # the worker's background snapshot writer
    ldflags: list[str] = ["-pthread"]
    sanitize = os.environ.get("TRADSYS_SANITIZE", "").strip()
    if sanitize:
        flag = f"-fsanitize={sanitize}"
        cflags += [flag, "-fno-omit-frame-pointer"]
        ldflags.append(flag)
    return cflags, ldflags


ffibuilder = FFI()
ffibuilder.cdef("\n".join(declarations(NATIVE / h) for h in HEADERS))
_cflags, _ldflags = compile_args()
ffibuilder.set_source(
    "tradsys._native",
    "\n".join(f'#include "{h}"' for h in HEADERS),
    sources=[os.path.relpath(NATIVE / s) for s in SOURCES],
    include_dirs=[os.path.relpath(NATIVE)],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
