"""``python -m errbound``: the same as the ``errbound`` command."""

import sys

from .cli import main

sys.exit(main())
