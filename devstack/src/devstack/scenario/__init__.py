"""A deterministic, seeded world of OpenTickets orders and their Stripe payments."""

from devstack.scenario.exports import read_csv, read_header, read_xlsx, write_csv, write_xlsx
from devstack.scenario.generator import Changes, Scenario
from devstack.scenario.model import EXPORT_COLUMNS, Order, Route
from devstack.scenario.stripe_world import PaymentFacts, StripeWorld

__all__ = [
    "EXPORT_COLUMNS",
    "Changes",
    "Order",
    "PaymentFacts",
    "Route",
    "Scenario",
    "StripeWorld",
    "read_csv",
    "read_header",
    "read_xlsx",
    "write_csv",
    "write_xlsx",
]
