"""`python -m neurovit.ablate --config experiments/ablation.yaml` (the same as `neurovit ablate`)."""

import sys

from neurovit.ablate.cli import main

sys.exit(main())
