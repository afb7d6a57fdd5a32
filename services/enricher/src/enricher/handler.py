"""The queue handlers: PaymentEnrichmentRequested and StripePayoutChanged in, transactions written.

Outcomes are decided by ``otcommon.bus.outcomes`` from what these handlers raise:

| what happened | raised | settlement |
| --- | --- | --- |
| enriched, pending payout, or no account knows the payment | nothing | complete |
| a payout change applied, stale (behind the state held), manual, or unknown to Stripe | nothing | complete |
| a transfer linked to its charge (its payments enriched again), or naming no charge | nothing | complete |
| Stripe rate limit after retries, 5xx, network; a lost ETag race | RetryableError | reschedule with backoff |
| bad, revoked or under-permitted key; a request Stripe rejects | PermanentError | dead-letter, alert |
| another message type (undecodable ones never get here); a bad payout status | PermanentError | dead-letter |
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog
from opentelemetry import metrics

from enricher.deposits import is_payout_status
from enricher.findings import enrichment_fields, unresolved_fields
from enricher.gateway import (
    StripeAccessDeniedError,
    StripeObjectMissingError,
    StripeRequestRejectedError,
    StripeUnavailableError,
)
from enricher.payouts import PayoutOutcome
from enricher.service import Unresolved
from otcommon.bus import PermanentError, RetryableError
from otcommon.messages import (
    PaymentEnrichmentRequested,
    StripePayoutChanged,
    StripeTransferCreated,
    TransactionChange,
    TransactionChanged,
)
from otcommon.schemas import parse_timestamp
from otcommon.store import EtagMismatchError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from enricher.findings import Findings
    from enricher.payouts import PayoutChanges
    from enricher.service import PaymentEnricher
    from enricher.transfers import TransferChanges
    from enricher.writer import PaymentWriter, WrittenTransaction
    from otcommon.bus import Delivery

_log = structlog.get_logger(__name__)
_meter = metrics.get_meter("enricher")
PERMANENT_FAILURES = _meter.create_counter(
    "enricher.permanent_failures", description="Messages dead-lettered for a reason no retry fixes (alert)."
)
PAYOUTS_NOT_FOUND = _meter.create_counter(
    "enricher.payouts_not_found",
    description="Payout changes completed without effect: Stripe does not know the payout on that account.",
)


class ChangeAnnouncer(Protocol):
    """Tells readers that transactions changed (the ``transaction-changes`` topic)."""

    async def announce(self, changes: Sequence[TransactionChanged]) -> None:
        """Publish the changes; raises when they could not be published."""
        ...


class EnrichmentHandler:
    """Handles one delivery of ``stripe-enrichment-queue``."""

    def __init__(
        self,
        *,
        enricher: PaymentEnricher,
        writer: PaymentWriter,
        announcer: ChangeAnnouncer | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._enricher = enricher
        self._writer = writer
        self._announcer = announcer
        self._clock = clock

    async def __call__(self, delivery: Delivery) -> None:
        """Enrich the payment the message names; raise to retry or dead-letter."""
        message = delivery.message
        if not isinstance(message, PaymentEnrichmentRequested):
            raise _permanent("UnexpectedMessageType", f"{message.message_type} is not handled here")
        # A redelivery may follow a write whose announcement failed: announce again (same message ids).
        redelivered = delivery.delivery_count > 1 or delivery.envelope.attempt > 1
        with structlog.contextvars.bound_contextvars(payment_id=message.payment_id):
            await self.enrich(message.payment_id, requested_at=message.requested_at, reannounce=redelivered)

    async def enrich(
        self,
        payment_id: str,
        *,
        requested_at: datetime,
        reannounce: bool = False,
        change: TransactionChange = TransactionChange.ENRICHED,
    ) -> Findings | Unresolved:
        """Find the payment's facts and write them on its transactions (announced as ``change``)."""
        with stripe_outcomes():
            try:
                result = await self._enricher.enrich(payment_id, requested_at=requested_at)
            except StripeObjectMissingError as error:
                # An object the payment names is gone (deleted, or another account's): a business fact.
                result = Unresolved(reason=f"a Stripe object it names is missing ({error.description})")
        now = self._clock()
        if isinstance(result, Unresolved):
            fields = unresolved_fields(reason=result.reason, enriched_at=now)
        else:
            fields = enrichment_fields(findings=result, enriched_at=now)
        try:
            written = await self._writer.apply(payment_id=payment_id, fields=fields)
        except EtagMismatchError as error:
            raise RetryableError("transaction kept changing while being enriched") from error
        await self._announce([w for w in written if w.changed or reannounce], change=change)
        _log.info(
            "payment enriched",
            state=fields["enrichmentState"],
            deposit_status=fields.get("depositStatus"),
            transactions=len(written),
            transactions_changed=sum(w.changed for w in written),
        )
        return result

    async def _announce(self, written: Sequence[WrittenTransaction], *, change: TransactionChange) -> None:
        if self._announcer is None or not any(w.enriched_at for w in written):
            return
        await self._announcer.announce(
            [
                TransactionChanged(
                    transaction_id=each.transaction_id,
                    event_id=each.event_id,
                    change=change,
                    changed_fields=each.changed_fields,
                    changed_at=parse_timestamp(each.enriched_at),
                )
                for each in written
                if each.enriched_at is not None
            ]
        )


class PayoutChangeHandler:
    """Handles one delivery of ``stripe-events-queue``: a payout moved, its payments follow."""

    def __init__(self, *, payouts: PayoutChanges) -> None:
        self._payouts = payouts

    async def __call__(self, delivery: Delivery) -> None:
        """Apply the payout change the message reports; raise to retry or dead-letter."""
        message = delivery.message
        if not isinstance(message, StripePayoutChanged):
            raise _permanent("UnexpectedMessageType", f"{message.message_type} is not handled here")
        if not is_payout_status(message.status):
            raise _permanent("UnknownPayoutStatus", f"payout status {message.status[:40]!r} is not Stripe's")
        redelivered = delivery.delivery_count > 1 or delivery.envelope.attempt > 1
        with (
            structlog.contextvars.bound_contextvars(
                payout_id=message.payout_id, stripe_event_id=message.stripe_event_id
            ),
            stripe_outcomes(),
        ):
            try:
                result = await self._payouts.apply(
                    message.payout_id,
                    account=message.account_id,
                    reported_status=message.status,
                    reannounce=redelivered,
                )
            except EtagMismatchError as error:
                raise RetryableError("the payout's index entry kept changing") from error
            if result.outcome is PayoutOutcome.NOT_FOUND:
                PAYOUTS_NOT_FOUND.add(1)
            _log.info(
                "payout change applied",
                outcome=result.outcome.value,
                reported_status=message.status,
                status=result.status,
                payments=result.payments,
            )


class StripeEventsHandler:
    """Handles one delivery of ``stripe-events-queue``: payout changes and new transfers."""

    def __init__(self, *, payouts: PayoutChangeHandler, transfers: TransferChanges) -> None:
        self._payouts = payouts
        self._transfers = transfers

    async def __call__(self, delivery: Delivery) -> None:
        """Apply the payout change or the transfer the message reports; raise to retry or dead-letter."""
        message = delivery.message
        if not isinstance(message, StripeTransferCreated):
            await self._payouts(delivery)  # a payout change, or refused there as unexpected
            return
        redelivered = delivery.delivery_count > 1 or delivery.envelope.attempt > 1
        with (
            structlog.contextvars.bound_contextvars(
                transfer_id=message.transfer_id, stripe_event_id=message.stripe_event_id
            ),
            stripe_outcomes(),
        ):
            result = await self._transfers.apply(message, reannounce=redelivered)
            _log.info(
                "transfer applied",
                outcome=result.outcome.value,
                charge_id=message.source_charge_id,
                payments=result.payments,
            )


@contextlib.contextmanager
def stripe_outcomes() -> Iterator[None]:
    """Stripe failures as message outcomes: retried when waiting helps, dead-lettered (alert) when not."""
    try:
        yield
    except StripeUnavailableError as error:
        raise RetryableError(error.description, retry_after_seconds=error.retry_after_seconds) from error
    except StripeAccessDeniedError as error:
        raise _permanent("StripeAccessDenied", error.description) from error
    except StripeRequestRejectedError as error:
        raise _permanent("StripeRequestRejected", error.description) from error


def _permanent(reason: str, description: str) -> PermanentError:
    PERMANENT_FAILURES.add(1, {"reason": reason})
    _log.error("enrichment failed permanently", alert=True, reason=reason, description=description)
    return PermanentError(description, reason=reason)
