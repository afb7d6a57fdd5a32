"""`python -m devstack.servicebus`: run the emulator."""

import sys

from devstack.servicebus.cli import main

sys.exit(main())
