"""Instruction counts from ``valgrind --tool=callgrind``: the noise-free figure beside a
timing on a shared machine.

A bench runs a small probe script under callgrind. The probe marks each measured stretch
by calling one C function just before it (``zero_before``: counters reset) and another
just after (``dump_before``: counters written to ``<out>.1``, ``<out>.2``, ...). Each dump
is read back with ``callgrind_annotate --inclusive=yes`` as the program total plus the
inclusive count of every function, so a bench can split a path into its parts (the C
core, the cffi wrapper, the interpreter) and divide by the records it moved.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TOTAL = "PROGRAM TOTALS"
_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?)\s*$")
_OBJ = re.compile(r"\s+\[[^\]]*\]$")


@dataclass
class Dump:
    """One stretch of a callgrind run: its total and inclusive counts per function."""

    total: int
    inclusive: dict[str, int] = field(default_factory=dict)

    def of(self, *functions: str) -> int:
        """Sum of the inclusive counts of ``functions`` (0 for those never called)."""
        return sum(self.inclusive.get(f, 0) for f in functions)


def valgrind() -> str | None:
    """Path of valgrind if it and callgrind_annotate are installed, else None."""
    vg = shutil.which("valgrind")
    return vg if vg and shutil.which("callgrind_annotate") else None


def _function_name(descriptor: str) -> str:
    """``/path/file.c:func'2 [/lib.so]`` -> ``func``."""
    descriptor = _OBJ.sub("", descriptor)
    name = descriptor.rsplit(":", 1)[-1]
    return re.sub(r"'\d+$", "", name)


def parse(path: Path) -> Dump:
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = 0
    inclusive: dict[str, int] = {}
    for line in out.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        what = m.group(2)
        if what.startswith(TOTAL):
            total = count
            continue
        if ":" not in what:
            continue  # source annotation lines
        name = _function_name(what)
        # a function shows up once per file it has code from (inlines): keep the largest
        inclusive[name] = max(count, inclusive.get(name, 0))
    return Dump(total, inclusive)


def run(
    argv: Sequence[str],
    *,
    zero_before: str,
    dump_before: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> list[Dump]:
    """Run ``argv`` under callgrind; return its dumps in order.

    Raises RuntimeError (with valgrind's last lines) if the run fails or times out.
    """
    vg = valgrind()
    if vg is None:
        raise RuntimeError("valgrind (with callgrind_annotate) is not installed")
    with tempfile.TemporaryDirectory(prefix="tradsys-callgrind-") as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [
            vg,
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            f"--zero-before={zero_before}",
            f"--dump-before={dump_before}",
            # no gdbserver: its vgdb-pipe files in /tmp would outlive a run killed on Ctrl-C
            "--vgdb=no",
            *argv,
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        if proc.returncode != 0:
            tail = "\n".join((stderr or stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"callgrind run {' '.join(argv)} exited {proc.returncode}:\n{tail}")
        parts = sorted(Path(tmp).glob("cg.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[-1]))
        return [parse(p) for p in parts]
