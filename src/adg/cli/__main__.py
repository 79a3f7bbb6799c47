"""`python -m adg.cli`: the `adg` command."""

import sys

from adg.cli import main

sys.exit(main())
