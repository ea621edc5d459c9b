"""`python -m tpde.cli`: the same as `tpde-pack`."""

import sys

from .main import main

sys.exit(main())
