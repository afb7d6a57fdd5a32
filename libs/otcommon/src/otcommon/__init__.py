"""Shared library of the OpenTickets backend services."""
