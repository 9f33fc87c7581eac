"""The report of `tradsys tune check`: one line per finding, then the verdict."""

from __future__ import annotations

from tradsys.tune.checks import Finding, Verdict

MARKS = {Verdict.OK: "ok  ", Verdict.WARN: "WARN", Verdict.BAD: "BAD "}


def is_ready(findings: list[Finding], strict: bool = False) -> bool:
    """Nothing bad (and, when strict, nothing that costs latency either)."""
    failing = {Verdict.BAD, Verdict.WARN} if strict else {Verdict.BAD}
    return not any(f.verdict in failing for f in findings)


def render(findings: list[Finding], strict: bool = False) -> str:
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{MARKS[f.verdict]}  {f.check:<{width}}  {f.found}")
        if f.fix and f.verdict is not Verdict.OK:
            lines.append(f"      {'':<{width}}  -> {f.fix}")
    warns = sum(f.verdict is Verdict.WARN for f in findings)
    bads = sum(f.verdict is Verdict.BAD for f in findings)
    verdict = "ready" if is_ready(findings, strict) else "NOT ready"
    lines.append(
        f"{verdict}: {bads} problem(s) that stop this configuration, "
        f"{warns} that cost latency" + (" (--strict counts both)" if strict else "")
    )
    return "\n".join(lines)
