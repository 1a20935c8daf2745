"""``python -m flowyml_core.cli``: the ``flowyml`` command without its console script (containers use it)."""

import sys

from flowyml_core.cli import main

sys.exit(main())
