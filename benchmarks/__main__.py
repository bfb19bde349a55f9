"""``python -m benchmarks [--quick] [--only ...]``: see :mod:`benchmarks.run`."""

import sys

from .run import main

sys.exit(main())
