"""The write process: the transactions' lookups and writes, on a core of their own.

Working through a backlog (a cold start: thousands of payments resolved within seconds), one
enricher process is bound by its own CPU, not by Stripe's rate: about two fifths of it went to
writing the results (the transactions' lookups, their replaces in batches, the
``transactions-of:`` entries), all of it Python in the Cosmos SDK and the event loop. With
``OT_ENRICHER_WRITE_PROCESSES=1`` (the default) ``serve`` starts this process beside itself and
hands it each payment's fields (``enricher/remote_writer.py``); it runs ``EnrichmentWriter.apply``
exactly as the enricher would, and answers what it wrote. Measured: ``services/enricher/DESIGN.md``,
"The write process".

It reads requests on stdin and answers on the pipe that was its stdout
(``enricher/write_protocol.py``; stdout itself then points at stderr, where its logs go). It opens
Cosmos DB from the same ``OT_`` settings (the enricher has provisioned it) and says it is ready
once it has. When stdin ends (the enricher stopped, or died), it finishes the writes it has begun,
answers them, and exits; stop signals sent to the enricher's whole process group are ignored, so
that only the enricher ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING, BinaryIO

import structlog

from enricher.payment_transactions import PaymentTransactionsIndex
from enricher.settings import EnricherSettings
from enricher.write_protocol import (
    ETAG_MISMATCH,
    FAILED,
    MAX_LINE_BYTES,
    READY_LINE,
    MalformedLineError,
    WriteAnswer,
    WriteFailure,
    WriteRequest,
    decode_request,
    encode_answer,
    request_number,
)
from enricher.writer import EnrichmentWriter
from otcommon.clients import open_cosmos
from otcommon.payment_transactions import PAYMENT_TRANSACTIONS_CONTAINER
from otcommon.runtime import CONSUMER_GC_THRESHOLDS, tune_garbage_collection
from otcommon.settings import ConfigurationError, load_settings
from otcommon.store import DEFAULT_TOPOLOGY, CosmosContainer, EtagMismatchError
from otcommon.telemetry import configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from enricher.writer import PaymentWriter
    from otcommon.store import DocumentContainer

log = structlog.get_logger("enricher.write_process")


def writer_on(container: Callable[[str], DocumentContainer], *, linger_seconds: float) -> EnrichmentWriter:
    """The writer ``open_enricher`` builds, on these containers."""
    return EnrichmentWriter(
        container("transactions"),
        payment_index=PaymentTransactionsIndex(
            container(PAYMENT_TRANSACTIONS_CONTAINER), linger_seconds=linger_seconds
        ),
        linger_seconds=linger_seconds,
    )


def child_environment(settings: EnricherSettings, *, inherited: Mapping[str, str]) -> dict[str, str]:
    """The write process's environment: ``inherited`` (the enricher's) without the ``OT_`` settings
    and secrets it has no use for, and with the settings the enricher runs on (a caller may have
    built them in code, not from the environment)."""
    env = {name: value for name, value in inherited.items() if not name.upper().startswith(_NOT_INHERITED)}
    cosmos = settings.cosmos
    env |= {
        "OT_COSMOS_ENDPOINT": cosmos.endpoint,
        "OT_COSMOS_DATABASE": cosmos.database,
        "OT_ENRICHER_COALESCE_LINGER_SECONDS": repr(settings.enricher_coalesce_linger_seconds),
        "OT_LOG_LEVEL": settings.log_level,
        "OT_LOG_FORMAT": settings.log_format,
        "OTEL_SERVICE_NAME": settings.service_name,
        # The settings ask for a Service Bus; the write process opens none, so it gets no secret.
        "OT_SERVICEBUS_NAMESPACE": UNUSED_SERVICEBUS_NAMESPACE,
    }
    if cosmos.key is not None:
        env["OT_COSMOS_KEY"] = cosmos.key.get_secret_value()
    return env


UNUSED_SERVICEBUS_NAMESPACE = "unused.servicebus.windows.net"
_NOT_INHERITED = ("OT_", "OTEL_SERVICE_NAME")
"""Replaced by the settings' own values (a stale one must not win) or not passed on (the Stripe
key, the Service Bus connection: the write process uses neither)."""


async def serve_writes(
    writer: PaymentWriter, requests: asyncio.StreamReader, answers: asyncio.StreamWriter
) -> None:
    """Answer every request line until ``requests`` ends; each is written as soon as it arrives."""
    answers.write(READY_LINE)
    await answers.drain()
    running: set[asyncio.Task[None]] = set()
    while line := await _next_line(requests):
        try:
            request = decode_request(line)
        except MalformedLineError as error:
            _refuse(line, error, answers)
            continue
        task = asyncio.ensure_future(_answer(writer, request, answers))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    with contextlib.suppress(ConnectionError):  # the enricher is gone: nobody reads the answers
        await answers.drain()


def _refuse(line: bytes, error: MalformedLineError, answers: asyncio.StreamWriter) -> None:
    """Only the enricher writes here, so a line not understood is a bug: logged, and answered as a
    failure when it names its number (its payment is then retried, not left waiting)."""
    log.error("write request not understood", error=str(error), line=line[:200].decode(errors="replace"))
    if (number := request_number(line)) is not None:
        answers.write(encode_answer(WriteAnswer(number, failure=WriteFailure(FAILED, str(error)))))


async def _next_line(requests: asyncio.StreamReader) -> bytes:
    """The next line; b"" at the end, and for a line longer than the limit: its payment could never
    hear back, so the process ends (after the writes begun), and the enricher retries every payment
    still waiting and starts it again."""
    try:
        return await requests.readline()
    except ValueError:
        pass
    log.error("write request longer than the limit: stopping", limit=MAX_LINE_BYTES)
    return b""


async def _answer(writer: PaymentWriter, request: WriteRequest, answers: asyncio.StreamWriter) -> None:
    try:
        written = await writer.apply(payment_id=request.payment_id, fields=request.fields)
    except EtagMismatchError as error:
        failure = WriteFailure(ETAG_MISMATCH, container=error.container, document_id=error.document_id)
        answer = WriteAnswer(request.number, failure=failure)
    except Exception as error:  # noqa: BLE001 - every failure is answered; the enricher decides the outcome
        description = f"{type(error).__name__}: {error}"
        log.warning("write failed", payment_id=request.payment_id, error=description)
        answer = WriteAnswer(request.number, failure=WriteFailure(FAILED, description))
    else:
        answer = WriteAnswer(request.number, written=written)
    with contextlib.suppress(ConnectionError):  # the enricher is gone: the write is made all the same
        answers.write(encode_answer(answer))
        await answers.drain()


async def run(
    settings: EnricherSettings, *, wrap: Callable[[CosmosContainer], DocumentContainer] | None = None
) -> None:
    """Open Cosmos DB, say ready, and answer stdin's requests on stdout until stdin ends.

    ``wrap`` (for a benchmark: counting the requests) wraps each container the writer uses.
    """
    loop = asyncio.get_running_loop()
    requests = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    reading, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, _answer_pipe())
    answers = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        async with open_cosmos(settings) as cosmos:
            database = settings.cosmos.database

            def container(name: str) -> DocumentContainer:
                plain = CosmosContainer.of(cosmos, database=database, spec=DEFAULT_TOPOLOGY.container(name))
                return plain if wrap is None else wrap(plain)

            writer = writer_on(container, linger_seconds=settings.enricher_coalesce_linger_seconds)
            await serve_writes(writer, requests, answers)
    finally:
        reading.close()
        # The last answers out before the loop ends (bounded: an enricher that is gone reads none).
        for _ in range(500):
            if transport.is_closing() or not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.01)
        answers.close()
        await asyncio.sleep(0)  # the pipes' transports let go of them on the next turn
    log.info("write process done")


def _answer_pipe() -> BinaryIO:
    """The pipe the answers go out on: stdout's file descriptor, moved, with stdout pointed at stderr,
    so that nothing printed by mistake can ever land among the answers."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return answers


def main() -> int:
    """``python -m enricher.write_process``: started by the enricher, not by hand."""
    try:
        settings = load_settings(EnricherSettings)
    except ConfigurationError as exc:
        sys.stderr.write(f"enricher write process: {exc}\n")
        return 2
    configure_logging(level=settings.log_level, fmt=settings.log_format, service_name=settings.service_name)
    tune_garbage_collection(CONSUMER_GC_THRESHOLDS)
    ignore_stop_signals()
    asyncio.run(run(settings))
    return 0


def ignore_stop_signals() -> None:
    """A SIGTERM or SIGINT sent to the enricher's whole process group (a supervisor stopping it, a
    Ctrl-C) must not cut the writes short: the enricher stops this process by closing its stdin,
    once its own messages have drained."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
