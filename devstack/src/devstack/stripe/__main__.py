"""`python -m devstack.stripe`."""

import sys

from devstack.stripe.cli import main

sys.exit(main())
