"""`python -m sigtop`: the sigtop command (the installed launcher runs it this way, isolated)."""

import sys

from sigtop.cli import main

sys.exit(main())
