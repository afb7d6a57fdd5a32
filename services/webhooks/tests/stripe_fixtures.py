"""Signed Stripe deliveries built from Stripe's published fixture objects (``fixtures3.json``)."""

from __future__ import annotations

import copy
import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import stripe

REFERENCE_DIR_VARIABLE = "OT_TEST_STRIPE_REFERENCE_DIR"
PLATFORM_SECRET = "whsec_platform_current"
CONNECT_SECRET = "whsec_connect_current"


def fixtures_file() -> Path:
    """``fixtures3.json``: in OT_TEST_STRIPE_REFERENCE_DIR, else in ``shared/stripe/`` above the repo."""
    if given := os.environ.get(REFERENCE_DIR_VARIABLE):
        return Path(given) / "fixtures3.json"
    for folder in Path(__file__).resolve().parents[3].parents:
        candidate = folder / "shared" / "stripe" / "fixtures3.json"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Stripe's fixtures3.json not found: set {REFERENCE_DIR_VARIABLE} to its directory"
    )


@cache
def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = json.loads(fixtures_file().read_text())["resources"]
    return resources


def fixture(kind: str, **overrides: Any) -> dict[str, Any]:
    """A copy of Stripe's fixture object of this kind, with some fields replaced."""
    obj: dict[str, Any] = copy.deepcopy(_resources()[kind])
    obj.update(overrides)
    return obj


def event(event_type: str, obj: dict[str, Any], *, n: int = 1, created: int = 1_700_000_000, **extra: Any):
    """A Stripe event wrapping ``obj`` (numbered ``n`` for a unique id)."""
    envelope = fixture("event", id=f"evt_test{n:06d}", type=event_type, created=created, livemode=False)
    envelope["data"] = {"object": obj}
    envelope.update(extra)
    return envelope


def sign(body: str, secret: str = PLATFORM_SECRET, *, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send for ``body``."""
    when = int(time.time()) if timestamp is None else timestamp
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=when)
