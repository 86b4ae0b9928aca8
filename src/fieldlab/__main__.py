"""``python -m fieldlab`` is the ``fieldlab`` command."""

import sys

from fieldlab.cli import main

sys.exit(main())
