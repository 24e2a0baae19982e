"""``python -m p2p_comm.daemon [--ready-fd N]``: the daemon for ``P2P_HOME``, in the foreground."""

from __future__ import annotations

import argparse
import sys

from ..paths import HomePaths, home_dir
from .app import run


def main() -> int:
    parser = argparse.ArgumentParser(prog="p2p-daemon")
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args()
    return run(HomePaths(home_dir()), args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
