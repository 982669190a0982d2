"""``python -m metalab``: the same as the ``metalab`` command."""

import sys

from .cli import main

sys.exit(main())
