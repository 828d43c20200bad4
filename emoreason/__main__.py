"""`python -m emoreason` runs the command line."""

import sys

from emoreason.cli import main

sys.exit(main())
