"""``python -m p2p_comm``: the same as the ``p2p`` command."""

import sys

from .cli import main

sys.exit(main())
