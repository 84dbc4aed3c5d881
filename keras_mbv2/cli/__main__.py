"""`python -m keras_mbv2.cli ...`: the same as the `keras-mbv2` console script."""

import sys

from .main import main

sys.exit(main())
