"""``python -m hopnet``: the same as the ``hopnet`` command."""

import sys

from hopnet.cli import main

sys.exit(main())
