"""Stripe API sandbox: the scenario's Stripe side behind the part of Stripe's REST API the services use."""

from devstack.stripe.app import create_app
from devstack.stripe.settings import StripeSandboxSettings
from devstack.stripe.state import StripeSandboxState

__all__ = ["StripeSandboxSettings", "StripeSandboxState", "create_app"]
