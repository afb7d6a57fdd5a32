"""``POST /api/webhooks/stripe``: thin: read the raw body, verify, parse, hand over, answer."""

from __future__ import annotations

import structlog
from aiohttp import web

from otcommon.http import BadRequestError, ServiceUnavailableError
from otcommon.store import StoreError
from webhooks.models import MalformedEventError, StripeEvent
from webhooks.processor import EventProcessor
from webhooks.signature import SignatureRejectedError, SignatureVerifier

VERIFIER = web.AppKey("verifier", SignatureVerifier)
LIVEMODE = web.AppKey("livemode", bool)
PROCESSOR = web.AppKey("processor", EventProcessor)

log = structlog.get_logger("webhooks.routes")
routes = web.RouteTableDef()


class InvalidSignatureError(BadRequestError):
    """The delivery's signature does not prove it comes from Stripe."""

    title = "Invalid signature"
    slug = "invalid-signature"


class InvalidEventError(BadRequestError):
    """A signed body that is not an event this endpoint accepts."""

    title = "Invalid event"
    slug = "invalid-event"


@routes.post("/api/webhooks/stripe")
async def receive_stripe_event(request: web.Request) -> web.Response:
    """Verify and accept one delivery; 200 once it is safe for Stripe to stop retrying."""
    body = await request.read()
    try:
        text = request.app[VERIFIER].verify(body, request.headers.get("Stripe-Signature"))
        event = StripeEvent.parse(text)
    except SignatureRejectedError as error:
        # Never the body or the header: they would help an attacker and may carry personal data.
        log.warning("webhook refused", reason=error.rejection.name, size=len(body))
        raise InvalidSignatureError(error.rejection.value) from None
    except MalformedEventError as error:
        log.warning("webhook refused", reason="malformed", detail=str(error), size=len(body))
        raise InvalidEventError(str(error)) from None
    if event.livemode is not request.app[LIVEMODE]:
        log.warning("webhook refused", reason="wrong-mode", event_id=event.id, size=len(body))
        raise InvalidEventError("event mode (livemode) does not match this endpoint")
    try:
        fresh = await request.app[PROCESSOR].accept(event)
    except StoreError as error:
        # Not recorded, so not acknowledged: Stripe retries, for up to three days.
        log.warning("webhook not recorded", event_id=event.id, error=type(error).__name__)
        raise ServiceUnavailableError("the event could not be recorded; retry later") from None
    return web.json_response({"received": event.id, "duplicate": not fresh})
