"""The fake gateway sidecar (see fake_sidecar.py)."""

import sys

from tests.cores.fake_sidecar import run

if __name__ == "__main__":
    sys.exit(run("gateway"))
