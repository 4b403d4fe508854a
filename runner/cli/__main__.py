"""``python -m runner.cli``: the same as the ``dspy-run`` command."""

import sys

from . import main

sys.exit(main())
