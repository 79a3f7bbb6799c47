"""The GPU benchmark as a package (being split by what it measures; see generate.py for now)."""

from bench.gpu.generate import *  # noqa: F403
from bench.gpu.generate import __doc__  # noqa: F401
