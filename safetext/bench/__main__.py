"""``python -m safetext.bench {toxic,overhead} ...``: the benchmark commands without the ``safetext`` wrapper."""

import sys

from safetext.bench.cli import main

sys.exit(main())
