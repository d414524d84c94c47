"""``python -m octattn``: the same as the ``octattn`` command (what torchrun launches)."""

import sys

from octattn.cli import main

sys.exit(main())
