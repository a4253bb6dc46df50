"""`python -m neurovit` — same as the `neurovit` console script."""

import sys

from neurovit.cli import main

sys.exit(main())
