"""`python -m devstack.opentickets`."""

import sys

from devstack.opentickets.cli import main

sys.exit(main())
