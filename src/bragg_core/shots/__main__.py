"""``python -m bragg_core.shots CONFIG.toml``: a run of many shots (see :mod:`bragg_core.shots.cli`)."""

import sys

from .cli import main

sys.exit(main())
