"""Run the official SDK samples against the devstack's stand-ins (`make conformance`)."""
