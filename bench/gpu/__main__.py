"""`python -m bench.gpu`: runs the GPU benchmark's command line."""

import sys

from bench.gpu.generate import main

sys.exit(main())
