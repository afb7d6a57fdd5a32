"""Stripe-Signature verification with the ``stripe`` package, against every secret currently valid."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING

import stripe

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class Rejection(StrEnum):
    """Why a delivery was refused; what the sender is told (nothing that helps forge a signature)."""

    MISSING_HEADER = "missing Stripe-Signature header"
    MALFORMED_HEADER = "malformed Stripe-Signature header"
    NO_MATCH = "no signature matches"
    STALE_TIMESTAMP = "signature timestamp outside the tolerance"
    NOT_UTF8 = "body is not UTF-8"


class SignatureRejectedError(Exception):
    """The delivery is not proven to come from Stripe."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.value)
        self.rejection = rejection


class SignatureVerifier:
    """Checks a raw body and its Stripe-Signature header against several secrets (endpoints, rotations)."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_seconds: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ValueError("at least one signing secret is needed")
        self._secrets = tuple(secrets)
        self._tolerance = tolerance_seconds
        self._clock = clock

    def verify(self, body: bytes, header: str | None) -> str:
        """The body as text once a signature over it matches one secret; else SignatureRejectedError."""
        if not header:
            raise SignatureRejectedError(Rejection.MISSING_HEADER)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureRejectedError(Rejection.NOT_UTF8) from None
        timestamp = _timestamp_of(header)
        # Stripe's check refuses only old timestamps; a signature from the future is as suspect.
        if timestamp > self._clock() + self._tolerance:
            raise SignatureRejectedError(Rejection.STALE_TIMESTAMP)
        rejection = Rejection.NO_MATCH
        for secret in self._secrets:
            try:
                stripe.WebhookSignature.verify_header(text, header, secret, self._tolerance)
            except stripe.SignatureVerificationError as error:
                # The library compares signatures before timestamps: "outside the tolerance" means the
                # secret matched and the delivery is a replay or very late, so no other secret can help.
                if "tolerance" in str(error):
                    raise SignatureRejectedError(Rejection.STALE_TIMESTAMP) from None
                if "expected scheme" in str(error):
                    rejection = Rejection.MALFORMED_HEADER
                continue
            return text
        raise SignatureRejectedError(rejection)


def _timestamp_of(header: str) -> int:
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise SignatureRejectedError(Rejection.MALFORMED_HEADER)
