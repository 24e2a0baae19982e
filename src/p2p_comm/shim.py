"""A faster ``p2p`` script: the CLI in an interpreter started without ``site`` (``-S``).

The console script pip generates starts Python normally, and ``site`` (the environment's
.pth files, the user directory, sitecustomize) is about 5 ms of the ~12 ms a command takes.
pip cannot write a ``-S`` into the scripts it generates (it replaces the whole first line),
so this writes one itself, over pip's: the same interpreter, with ``-S``, and the directory
that holds ``p2p_comm`` (the venv's site-packages, or the checkout's ``src`` for an editable
install) put on the path where ``site`` would have put it. If that directory no longer holds
``p2p_comm`` (moved, uninstalled, reinstalled elsewhere) the script runs ``site`` after all:
the same command at the old speed. The commands the CLI runs itself (``daemon``, ``relay``,
``mcp``, ``demo``...) run ``site`` too (`cli._local`); the daemon is started normally.

    python -m p2p_comm.shim [BIN_DIR]   # writes BIN_DIR/p2p; BIN_DIR: the interpreter's own

``make`` runs it after installing; ``python -m p2p_comm`` needs nothing of this.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TEMPLATE = """#!{python} -S
# The p2p command, written by `python -m p2p_comm.shim` over pip's console script: Python
# without `site` (-S), and p2p_comm's directory on the path where `site` would put it.
import sys

sys.path.append({where!r})
try:
    from p2p_comm.cli import main
except ImportError:  # p2p_comm is no longer there: find it the slow way
    sys.path.remove({where!r})
    import site

    site.main()
    from p2p_comm.cli import main
if __name__ == "__main__":
    sys.exit(main())
"""

# Linux reads at most this many bytes of a "#!" line (older kernels: 127).
MAX_SHEBANG = 127


class ShimError(Exception):
    """The script cannot be written for this interpreter; pip's stays."""


def script(python: str, where: str) -> str:
    """The text of the script for interpreter ``python``, finding p2p_comm in ``where``."""
    if any(c.isspace() for c in python) or len(python) + len("#! -S") > MAX_SHEBANG:
        raise ShimError(f"the interpreter's path cannot be a '#!' line: {python}")
    return TEMPLATE.format(python=python, where=where)


def package_dir() -> str:
    """The directory holding the ``p2p_comm`` package this process runs."""
    return str(Path(__file__).resolve().parent.parent)


def write(bin_dir: Path, python: str | None = None) -> Path:
    """Write ``bin_dir/p2p`` (atomically: a running ``p2p`` keeps its old file)."""
    from .atomicfile import replace_file

    target = bin_dir / "p2p"
    text = script(python or sys.executable, package_dir())
    replace_file(os.fspath(target), text.encode(), 0o755)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    bin_dir = Path(args[0]) if args else Path(sys.executable).parent
    try:
        target = write(bin_dir)
    except (ShimError, OSError) as exc:
        print(f"p2p_comm.shim: {exc}; the p2p script pip wrote stays.", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
