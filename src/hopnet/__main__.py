import sys

from hopnet.cli import main

sys.exit(main())
