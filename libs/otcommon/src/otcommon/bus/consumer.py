"""The consumer loop: receive with bounded concurrency, hand each message to a handler, settle it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace

from otcommon.bus.backoff import Backoff
from otcommon.bus.errors import SettlementError, is_transient_error
from otcommon.bus.outcomes import (
    UNEXPECTED_ERROR,
    RetryPolicy,
    Settlement,
    apply_outcome,
    attempt_of,
    decide_outcome,
)
from otcommon.messages import Envelope, Message, decode_message, extract_trace_context

if TYPE_CHECKING:
    from collections.abc import Sequence

    from otcommon.bus.interface import MessageSource, ReceivedMessage
    from otcommon.bus.outcomes import Outcome

_log = structlog.get_logger(__name__)
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """What a handler gets: the typed envelope and the broker's delivery count."""

    envelope: Envelope[Message]
    delivery_count: int

    @property
    def message(self) -> Message:
        """The typed message."""
        return self.envelope.message


Handler = Callable[[Delivery], Awaitable[None]]

TASKS_STARTED_PER_TURN = 256
"""Handlers started before the consumer lets the event loop run the rest of its work.

A receive of a backlog returns thousands of messages at once. Started all in one go, every handler's
first step runs before any other callback, and the work those handlers wait for (one request that
all of them need, say) waits behind them all, once per step it takes.
"""


@dataclass(frozen=True, kw_only=True)
class ConsumerSettings:
    """How a consumer receives, how much it does at once, and how it stops."""

    entity_name: str
    max_concurrency: int = 8
    max_wait_seconds: float = 5.0
    # Keep below the pod's termination grace period so settling still happens before the kill.
    shutdown_timeout_seconds: float = 30.0
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    receive_backoff: Backoff = field(
        default_factory=lambda: Backoff(initial_seconds=1.0, maximum_seconds=30.0)
    )

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.max_wait_seconds <= 0 or self.shutdown_timeout_seconds < 0:
            raise ValueError("max_wait_seconds must be positive and shutdown_timeout_seconds not negative")


class Consumer:
    """Receives from a MessageSource and runs a handler per message, at most `max_concurrency` at a time.

    The handler signals the outcome by returning (complete) or raising RetryableError (reschedule with
    backoff), PermanentError (dead-letter); see `otcommon.bus.outcomes`. The consumer owns the source and
    closes it when it stops.
    """

    def __init__(
        self,
        *,
        source: MessageSource,
        handler: Handler,
        settings: ConsumerSettings,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._source = source
        self._tracer = tracer or _tracer
        self._handler = handler
        self._settings = settings
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._started = False

    async def run(self) -> None:
        """Receive and handle messages until stop() is called, then shut down in order."""
        if self._started:
            raise RuntimeError("a consumer runs once")
        self._started = True
        try:
            await self._receive_until_stopped()
        finally:
            try:
                await self._finish_in_flight()
            finally:
                await self._source.close()
                self._stopped.set()

    async def stop(self) -> None:
        """Stop receiving, let in-flight messages finish within the shutdown bound, abandon the rest."""
        self._stopping.set()
        if self._started:
            await self._stopped.wait()

    async def _receive_until_stopped(self) -> None:
        stop_requested = asyncio.ensure_future(self._stopping.wait())
        receiving: asyncio.Future[Sequence[ReceivedMessage]] | None = None
        failures = 0
        try:
            while not self._stopping.is_set():
                free = self._settings.max_concurrency - len(self._in_flight)
                if free == 0:
                    await asyncio.wait(
                        {*self._in_flight, stop_requested}, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                receiving = asyncio.ensure_future(
                    self._source.receive(max_messages=free, max_wait_seconds=self._settings.max_wait_seconds)
                )
                await asyncio.wait({receiving, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    break
                if (error := receiving.exception()) is not None:
                    failures += 1
                    await self._pause_after_receive_error(
                        error, failures=failures, stop_requested=stop_requested
                    )
                    continue
                failures = 0
                for number, received in enumerate(receiving.result(), start=1):
                    if self._stopping.is_set():
                        # Received as the stop arrived: give it straight back rather than start new work.
                        await _abandon_quietly(received)
                        continue
                    task = asyncio.create_task(self._process(received))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                    if number % TASKS_STARTED_PER_TURN == 0:
                        await asyncio.sleep(0)
        finally:
            stop_requested.cancel()
            if receiving is not None and not receiving.done():
                # Safe under peek-lock: anything handed over mid-receive returns when its lock expires.
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiving

    async def _pause_after_receive_error(
        self, error: BaseException, *, failures: int, stop_requested: asyncio.Future[Any]
    ) -> None:
        if not is_transient_error(error):
            _log.error("receive failed", entity=self._settings.entity_name, error_type=type(error).__name__)
            raise error
        delay = self._settings.receive_backoff.delay_seconds(attempt=failures)
        _log.warning(
            "receive failed, retrying",
            entity=self._settings.entity_name,
            error_type=type(error).__name__,
            delay_seconds=round(delay, 3),
        )
        await asyncio.wait({stop_requested}, timeout=delay)

    async def _finish_in_flight(self) -> None:
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=self._settings.shutdown_timeout_seconds)
        if not pending:
            return
        _log.warning("shutdown bound reached, abandoning in-flight messages", count=len(pending))
        for task in pending:
            # Each task abandons its own message when cancelled (see _process).
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _process(self, received: ReceivedMessage) -> None:
        raw = received.raw
        started = time.perf_counter()
        attempt = attempt_of(raw)
        with (
            structlog.contextvars.bound_contextvars(
                message_id=raw.message_id, correlation_id=raw.correlation_id, message_type=raw.subject
            ),
            self._tracer.start_as_current_span(
                f"{self._settings.entity_name} process",
                context=extract_trace_context(raw.properties),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "servicebus",
                    "messaging.destination.name": self._settings.entity_name,
                    "messaging.operation.type": "process",
                    "messaging.message.id": raw.message_id or "",
                    "messaging.message.conversation_id": raw.correlation_id or "",
                },
            ),
        ):
            error: BaseException | None = None
            try:
                envelope = decode_message(raw)
                await self._handler(Delivery(envelope=envelope, delivery_count=received.delivery_count))
            except asyncio.CancelledError as cancelled:
                error = cancelled
            except Exception as failure:  # noqa: BLE001  # every failure is mapped to an outcome, none escapes
                error = failure
            outcome = decide_outcome(error=error, attempt=attempt, policy=self._settings.retry_policy)
            settled = await _settle(received, outcome)
            _log_summary(
                outcome=outcome,
                settled=settled,
                error=error,
                fields={
                    "delivery_count": received.delivery_count,
                    "attempt": attempt,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
        if isinstance(error, asyncio.CancelledError):
            raise error


async def _settle(received: ReceivedMessage, outcome: Outcome) -> bool:
    try:
        await apply_outcome(received, outcome)
    except SettlementError:
        return False
    except Exception as error:  # noqa: BLE001  # what is not settled is redelivered; only the log line is at stake
        _log.error("settle failed", error_type=type(error).__name__, error_origin=_origin(error))
        return False
    return True


async def _abandon_quietly(received: ReceivedMessage) -> None:
    with contextlib.suppress(SettlementError):
        await received.abandon()


def _log_summary(
    *, outcome: Outcome, settled: bool, error: BaseException | None, fields: dict[str, object]
) -> None:
    fields = {"outcome": outcome.settlement.value, "settled": settled, **fields}
    if outcome.reason is not None:
        fields["reason"] = outcome.reason
    if outcome.settlement in {Settlement.DEAD_LETTER, Settlement.RESCHEDULE} and outcome.description:
        # Descriptions are built from error kinds and field names only (see MessageDecodeError).
        fields["description"] = outcome.description
    if outcome.settlement is Settlement.RESCHEDULE:
        fields["delay_seconds"] = round(outcome.delay_seconds, 3)
    if error is not None and not isinstance(error, asyncio.CancelledError):
        fields["error_type"] = type(error).__name__
        fields["error_origin"] = _origin(error)
    if outcome.reason == UNEXPECTED_ERROR or not settled:
        _log.error("message handled", **fields)
    elif outcome.settlement is Settlement.COMPLETE:
        _log.info("message handled", **fields)
    else:
        _log.warning("message handled", **fields)


def _origin(error: BaseException) -> str:
    # Where the error was raised, without its text: exception messages may quote personal data.
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
