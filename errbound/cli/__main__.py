"""``python -m errbound.cli``: the ``errbound`` command."""

import sys

from .main import main

sys.exit(main())
