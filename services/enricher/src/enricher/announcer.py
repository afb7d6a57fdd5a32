"""TransactionChanged announcements through an ``otcommon.bus`` publisher (``transaction-changes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otcommon.messages import make_envelope

if TYPE_CHECKING:
    from collections.abc import Sequence

    from otcommon.bus import MessagePublisher
    from otcommon.messages import TransactionChanged


class PublishingAnnouncer:
    """Publishes each change under its deterministic message id: a re-announcement is a duplicate."""

    def __init__(self, publisher: MessagePublisher) -> None:
        self._publisher = publisher

    async def announce(self, changes: Sequence[TransactionChanged]) -> None:
        """Publish the changes; PublishError when they could not all be sent."""
        await self._publisher.publish(make_envelope(change) for change in changes)
