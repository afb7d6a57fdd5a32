"""`python -m devstack.scenario`."""

import sys

from devstack.scenario.cli import main

sys.exit(main())
