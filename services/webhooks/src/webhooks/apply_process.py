"""An apply process: the workers and the sweep, fed through pipes by the answer processes; no HTTP.

Started by ``serve`` when ``OT_WEBHOOKS_APPLY_PROCESSES`` is above 0 (``webhooks/handoff.py`` says
why). On SIGTERM it goes on taking what the answer processes hand over until they have answered
their last delivery and closed their pipes, then applies what it holds, as a whole service does at
shutdown; whatever is still unapplied then waits, recorded, for the sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

import structlog

from webhooks.app import SHUTDOWN_GRACE_SECONDS, open_webhooks
from webhooks.handoff import receive_hand_offs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from webhooks.settings import WebhookSettings

log = structlog.get_logger("webhooks.apply_process")


async def serve_applying(
    settings: WebhookSettings, fds: Sequence[int], *, grace: float = SHUTDOWN_GRACE_SECONDS
) -> None:
    """Apply what arrives on ``fds`` until SIGTERM (or SIGINT), or until every pipe is closed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for each in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(each, stop.set)
    async with open_webhooks(settings) as webhooks:
        processor = webhooks.processor
        workers = asyncio.create_task(
            processor.serve(
                workers=settings.webhooks_apply_workers, sweep_every=settings.webhooks_sweep_seconds
            ),
            name="webhooks-processor",
        )
        receiving = asyncio.create_task(
            receive_hand_offs(fds, processor.take_over), name="webhooks-hand-offs"
        )
        stopping = asyncio.create_task(stop.wait())
        log.info("webhooks applying", pid=os.getpid(), pipes=len(fds), niceness=os.nice(0))
        try:
            await asyncio.wait({receiving, stopping, workers}, return_when=asyncio.FIRST_COMPLETED)
            # The answer processes answer their last deliveries, then close their pipes: what they
            # hand over meanwhile is still taken (and applied by the workers, still running).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(receiving), grace)
        finally:
            for task in (stopping, receiving, workers):
                task.cancel()
            for task in (stopping, receiving):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(asyncio.CancelledError):
                await workers  # a worker's failure is raised here, after the others stopped
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(processor.drain(), grace)
    log.info("webhooks apply process stopped", pid=os.getpid())
