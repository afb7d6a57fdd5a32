"""Fixtures shared by every test suite of the workspace (the devstack stand-ins)."""

pytest_plugins = ["devstack.testing"]
