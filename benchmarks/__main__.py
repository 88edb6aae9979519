"""``python -m benchmarks`` is ``scanward bench``: the whole suite (``benchmarks.suite``)."""

import sys

from ingest.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
