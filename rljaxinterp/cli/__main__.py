"""``python -m rljaxinterp.cli ...``: the ``rljaxinterp`` command (how ``launch`` starts its children)."""

import sys

from rljaxinterp.cli import main

sys.exit(main())
