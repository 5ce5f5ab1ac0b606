"""``python -m weightinit``: the same as the ``weightinit`` command."""

import sys

from weightinit.commands.cli import main

sys.exit(main())
