"""``replay --since``: events Stripe could not deliver, read back from its API and applied as deliveries.

Stripe lists an event under ``delivery_success=false`` while a delivery to some endpoint is pending
or after every attempt failed; it keeps events for 30 days. Platform events are listed with the
platform's key; a connected account's events (the Connect endpoint's) only with ``Stripe-Account``
set to that account, so every connected account is asked in turn. Each event goes through the same
journal as a delivery: recorded once by its id, then applied; an event recorded before (delivered
meanwhile, or replayed already) is applied at most once whatever is run again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from webhooks.models import MalformedEventError, StripeEvent
from webhooks.states import EventState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from webhooks.processor import EventProcessor
    from webhooks.stripe_events import EventWindow

log = structlog.get_logger("webhooks.recovery")

PLATFORM = "platform"
"""How progress lines name the platform account."""

WAITING = "waiting"
"""How progress lines name events left ``received`` (their payment is not stored yet; the sweep retries)."""


class UndeliveredEvents(Protocol):
    """Where undelivered events are read from (Stripe's API; a fake in tests)."""

    def connected_accounts(self) -> AsyncIterator[str]: ...

    def undelivered_events(
        self, *, account: str | None, window: EventWindow
    ) -> AsyncIterator[dict[str, Any]]: ...


@dataclass
class ReplayTally:
    """What one account's (or the whole run's) replay found and did."""

    listed: int = 0
    recorded_now: int = 0
    recorded_before: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, other: ReplayTally) -> None:
        """Fold another tally into this one."""
        self.listed += other.listed
        self.recorded_now += other.recorded_now
        self.recorded_before += other.recorded_before
        self.refused.update(other.refused)
        self.outcomes.update(other.outcomes)

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing was refused."""
        return not self.refused and not self.outcomes[EventState.FAILED.value]

    def describe(self, *, dry_run: bool) -> str:
        """One progress line."""
        parts = [f"{self.listed} undelivered"]
        if dry_run:
            parts.append(f"{self.recorded_now} not recorded yet, {self.recorded_before} recorded before")
        else:
            parts.append(f"recorded now {self.recorded_now}, recorded before {self.recorded_before}")
        if self.outcomes:
            parts.append(", ".join(f"{state} {count}" for state, count in sorted(self.outcomes.items())))
        if self.refused:
            parts.append("refused: " + ", ".join(f"{why} {n}" for why, n in sorted(self.refused.items())))
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Replay:
    """One run's parameters: the window, the mode events must have, and whether to change anything."""

    window: EventWindow
    livemode: bool
    dry_run: bool = False


async def replay_undelivered(
    *,
    source: UndeliveredEvents,
    processor: EventProcessor,
    replay: Replay,
    progress: Callable[[str], None],
) -> ReplayTally:
    """Replay the platform's and every connected account's undelivered events; the whole run's tally."""
    total = ReplayTally()
    accounts = 0
    for account in [None, *[a async for a in source.connected_accounts()]]:
        tally = await _replay_account(source, processor, replay, account)
        total.add(tally)
        accounts += account is not None
        if tally.listed:
            progress(f"{account or PLATFORM}: {tally.describe(dry_run=replay.dry_run)}")
    progress(f"total ({accounts} connected accounts asked): {total.describe(dry_run=replay.dry_run)}")
    return total


async def _replay_account(
    source: UndeliveredEvents, processor: EventProcessor, replay: Replay, account: str | None
) -> ReplayTally:
    tally = ReplayTally()
    async for listed in source.undelivered_events(account=account, window=replay.window):
        tally.listed += 1
        # Listed under Stripe-Account: the account the event belongs to, whether or not it says so.
        payload = {**listed, "account": listed.get("account") or account} if account is not None else listed
        try:
            event = StripeEvent.from_payload(payload)
        except MalformedEventError as error:
            log.warning("replay refused an event", reason="malformed", detail=str(error))
            tally.refused["malformed"] += 1
            continue
        if event.livemode is not replay.livemode:
            log.warning("replay refused an event", reason="wrong-mode", event_id=event.id)
            tally.refused["wrong-mode"] += 1
            continue
        await _replay_event(processor, event, tally, dry_run=replay.dry_run)
    return tally


async def _replay_event(
    processor: EventProcessor, event: StripeEvent, tally: ReplayTally, *, dry_run: bool
) -> None:
    if dry_run:
        state = await processor.recorded_state(event.id)
        fresh = state is None
    else:
        fresh, state = await processor.recover(event)
    if fresh:
        tally.recorded_now += 1
    else:
        tally.recorded_before += 1
    if state is not None:
        tally.outcomes[WAITING if state is EventState.RECEIVED else state.value] += 1
    log.info("webhook event replayed", event_id=event.id, type=event.type, fresh=fresh, dry_run=dry_run)
