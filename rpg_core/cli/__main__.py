"""``python -m rpg_core.cli``: the ``rpg`` command line."""

import sys

from . import main

sys.exit(main())
