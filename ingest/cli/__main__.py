"""``python -m ingest.cli``: how supervisors start their children."""

import sys

from ingest.cli import main

sys.exit(main())
