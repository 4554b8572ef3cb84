"""``python -m devchain``: same as the ``devchain`` command."""

import sys

from .cli import main

sys.exit(main())
