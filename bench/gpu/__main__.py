"""`python -m bench.gpu`: the GPU benchmark's command line (bench.gpu.cli.main)."""

import sys

from bench.gpu.cli import main

sys.exit(main())
