"""The enricher's side of its write process: ``apply`` as ``EnrichmentWriter`` has it, run by a child.

``WriteProcess`` starts the child (``python -m enricher.write_process``, with the enricher's
environment), waits until it says it has opened Cosmos DB, then sends each payment's fields as one
line and hands each answer to the payment that asked (``enricher/write_protocol.py``). What the
handler sees is what it would see in process: the written transactions, or EtagMismatchError (a
lost race: retried), or WriteFailedError for any other failure of the write (abandoned and
redelivered, as an unexpected error in process is).

If the child dies, every payment waiting on it gets WriteProcessUnavailableError (a RetryableError:
its message is retried after a backoff; the writes are idempotent, so one the child had made before
it died is found made), and the child is started again (after a second, the wait doubling up to a
minute while it fails to start). An answer longer than any the protocol allows ends the child the
same way, rather than leave its payment waiting. Stopping closes its stdin: it answers the writes
it has begun and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING, Any

import structlog

from enricher.write_protocol import (
    ETAG_MISMATCH,
    MAX_LINE_BYTES,
    READY_LINE,
    MalformedLineError,
    WriteRequest,
    decode_answer,
    encode_request,
)
from otcommon.bus import RetryableError
from otcommon.store import EtagMismatchError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from enricher.writer import WrittenTransaction

log = structlog.get_logger("enricher.remote_writer")

WRITE_PROCESS_COMMAND = (sys.executable, "-m", "enricher.write_process")
START_TIMEOUT_SECONDS = 60.0
"""How long the child may take to open Cosmos DB and say it is ready."""
STOP_TIMEOUT_SECONDS = 30.0
"""How long the child may take, once its stdin is closed, to finish its writes and exit."""
RESTART_DELAY_SECONDS = 1.0
"""The wait before a child that died is started again; doubled after each failed start."""
MAX_RESTART_DELAY_SECONDS = 60.0
"""The longest wait between two failed starts."""


class WriteFailedError(Exception):
    """The write process could not write a payment's fields (its description says why)."""


class WriteProcessUnavailableError(RetryableError):
    """The write process is not running (it died, or is being started again): retry later."""


class WriteProcess:
    """``EnrichmentWriter.apply`` in a child process: the writes run on another core."""

    def __init__(
        self,
        *,
        command: Sequence[str] = WRITE_PROCESS_COMMAND,
        env: Mapping[str, str] | None = None,
        start_timeout_seconds: float = START_TIMEOUT_SECONDS,
        stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
        restart_delay_seconds: float = RESTART_DELAY_SECONDS,
        max_restart_delay_seconds: float = MAX_RESTART_DELAY_SECONDS,
    ) -> None:
        self._command = tuple(command)
        self._env = None if env is None else dict(env)
        self._start_timeout = start_timeout_seconds
        self._stop_timeout = stop_timeout_seconds
        self._restart_delay = restart_delay_seconds
        self._max_restart_delay = max(restart_delay_seconds, max_restart_delay_seconds)
        self._process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[list[WrittenTransaction]]] = {}
        self._numbers = 0
        self._closing = False
        self.starts = 0
        """How many times a child was started (the first time included)."""

    @property
    def pid(self) -> int | None:
        """The running child's process id (None when none runs)."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the child and wait until it is ready; raise WriteProcessUnavailableError if it is not."""
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=self._env,
                limit=MAX_LINE_BYTES,
            )
        except OSError as error:
            raise WriteProcessUnavailableError(f"the write process could not be started: {error}") from error
        self.starts += 1
        assert process.stdout is not None  # noqa: S101 - asked for above
        first: bytes | None
        try:
            first = await asyncio.wait_for(process.stdout.readline(), timeout=self._start_timeout)
        except (TimeoutError, ValueError):
            first = None  # not ready in time, or a first line longer than any answer
        except BaseException:
            await _stopped(process, grace_seconds=0.0)  # cancelled (a stop while starting): not left behind
            raise
        if first != READY_LINE:
            # b"": it closed its stdout, exiting; else it is not a write process, or not ready in time.
            grace = self._stop_timeout if first == b"" else 0.0
            code = await _stopped(process, grace_seconds=grace)
            raise WriteProcessUnavailableError(
                f"the write process did not start (exit code {code}; its log says why)"
            )
        self._process = process
        self._reading = asyncio.ensure_future(self._read_answers(process))
        log.info("write process started", pid=process.pid)

    async def apply(self, *, payment_id: str, fields: Mapping[str, Any]) -> list[WrittenTransaction]:
        """Write ``fields`` on each transaction of the payment, in the child; what it wrote."""
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            raise WriteProcessUnavailableError("the write process is not running; it is being started again")
        self._numbers += 1
        number = self._numbers
        line = encode_request(WriteRequest(number, payment_id, dict(fields)))
        answer: asyncio.Future[list[WrittenTransaction]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = answer
        try:
            try:
                process.stdin.write(line)
                await process.stdin.drain()
            except (ConnectionError, RuntimeError) as error:
                raise WriteProcessUnavailableError(f"the write process stopped reading: {error}") from error
            return await answer
        finally:
            # However this ends (answered, failed, cancelled at shutdown), nothing is left waiting.
            self._waiting.pop(number, None)
            if not answer.done():
                answer.cancel()
            elif not answer.cancelled():
                answer.exception()  # retrieved: an answer that came as this payment stopped waiting

    async def check(self) -> None:
        """Readiness: raise when no child runs (it died and is being started again)."""
        if self._process is None or self._process.returncode is not None:
            raise WriteProcessUnavailableError("the write process is not running")

    async def close(self) -> None:
        """Let the child finish what it has begun and exit (killed after the stop timeout)."""
        self._closing = True
        if self._restarting is not None:
            self._restarting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarting
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        await _stopped(process, grace_seconds=self._stop_timeout)
        if self._reading is not None:
            await self._reading

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None  # noqa: S101 - asked for at start
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:
                line = None
            if line is None:
                # Its payment would wait for ever: the child is stopped, so that every waiting payment
                # is retried, and started again.
                log.error("write process answer longer than the limit", limit=MAX_LINE_BYTES, alert=True)
                await _stopped(process, grace_seconds=0.0)
                break
            if not line:
                break
            self._settle(line)
        code = await process.wait()
        if self._process is process:
            self._process = None
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(
                    WriteProcessUnavailableError(
                        f"the write process stopped (exit code {code}) before its answer"
                    )
                )
        self._waiting.clear()
        if not self._closing:
            log.error("write process stopped; starting it again", exit_code=code, alert=True)
            self._restarting = asyncio.ensure_future(self._restart())

    def _settle(self, line: bytes) -> None:
        problem: str | None = None
        try:
            answer = decode_answer(line)
        except MalformedLineError as error:
            problem = str(error)
        if problem is not None:
            log.error("write process answer not understood", error=problem)
            return
        waiting = self._waiting.get(answer.number)
        if waiting is None or waiting.done():
            return  # its payment stopped waiting (cancelled at shutdown)
        if answer.failure is None:
            waiting.set_result(answer.written or [])
        elif answer.failure.kind == ETAG_MISMATCH:
            waiting.set_exception(EtagMismatchError(answer.failure.container, answer.failure.document_id))
        else:
            waiting.set_exception(WriteFailedError(answer.failure.description))

    async def _restart(self) -> None:
        """Start the child again until it runs, waiting longer after each failed start. Meanwhile
        ``/readyz`` reports it missing and each payment is retried later (RetryableError)."""
        delay = self._restart_delay
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self.start()
            except Exception as error:  # noqa: BLE001 - whatever it was, the next try is the answer
                problem = f"{type(error).__name__}: {error}"
            else:
                return
            delay = min(delay * 2, self._max_restart_delay)
            log.error("write process not started again", error=problem, retry_in_seconds=delay, alert=True)


async def _stopped(process: asyncio.subprocess.Process, *, grace_seconds: float) -> int:
    """The child's exit code, once it has exited by itself within ``grace_seconds`` or been killed.

    Not killed before that: killing a child that has just exited reaps it behind asyncio's back
    (``Popen.send_signal`` polls first), and its exit code is then lost.
    """
    exited = asyncio.ensure_future(process.wait())
    done, _ = await asyncio.wait([exited], timeout=grace_seconds)
    if not done:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        log.error("write process killed", waited_seconds=grace_seconds)
    return await exited
