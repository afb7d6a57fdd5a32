"""The change hub: scope, resume from a position, and slow subscribers dropped without blocking others."""

from __future__ import annotations

import pytest

from otcommon.http import Principal
from query_api.hub import (
    ChangeEvent,
    ChangeHub,
    InvalidEventIdError,
    ResumeTooOldError,
    SubscriberDroppedError,
)

EVERYONE = Principal("admin")
ONLY_A = Principal("organizer-a", event_ids=frozenset({"a"}))


def event(position: int, event_id: str = "a") -> ChangeEvent:
    return ChangeEvent(position=position, event_id=event_id, data=f'{{"n":{position}}}')


def drain(subscription) -> list[int]:
    positions = []
    while not subscription.queue.empty():
        item = subscription.queue.get_nowait()
        positions.append(None if item is None else item.position)
    return positions


def test_a_subscriber_receives_only_events_it_may_see():
    hub = ChangeHub()
    hub.begin_at(0)
    scoped = hub.subscribe(ONLY_A)
    unscoped = hub.subscribe(EVERYONE)

    hub.publish([event(1, "a"), event(2, "b"), event(3, "a")])

    assert drain(scoped) == [1, 3]
    assert drain(unscoped) == [1, 2, 3]


def test_resume_replays_the_buffered_events_after_the_position_within_scope():
    hub = ChangeHub()
    hub.begin_at(10)
    hub.publish([event(11, "a"), event(12, "b"), event(14, "a"), event(15, "a")])

    resumed = hub.subscribe(ONLY_A, after=11)
    hub.publish([event(16, "a")])

    assert [e.position for e in resumed.replay] == [14, 15]
    assert drain(resumed) == [16]


def test_resume_from_the_start_point_replays_everything_since():
    hub = ChangeHub()
    hub.begin_at(10)
    hub.publish([event(11), event(12)])
    assert [e.position for e in hub.subscribe(EVERYONE, after=10).replay] == [11, 12]


def test_resume_from_before_the_buffer_is_refused():
    hub = ChangeHub(replay_events=2)
    hub.begin_at(10)
    hub.publish([event(11), event(12), event(13)])  # 11 is evicted: the floor moves to it

    with pytest.raises(ResumeTooOldError) as refused:
        hub.subscribe(EVERYONE, after=10)
    assert refused.value.oldest_resumable == 11
    assert [e.position for e in hub.subscribe(EVERYONE, after=11).replay] == [12, 13]


def test_resume_before_any_start_point_is_refused():
    hub = ChangeHub()
    with pytest.raises(ResumeTooOldError):
        hub.subscribe(EVERYONE, after=5)


async def test_a_slow_subscriber_is_dropped_and_the_others_keep_receiving():
    hub = ChangeHub(subscriber_queue=3)
    hub.begin_at(0)
    slow = hub.subscribe(EVERYONE)
    reading = hub.subscribe(EVERYONE)

    for position in range(1, 8):
        hub.publish([event(position)])
        assert (await reading.next_event()).position == position

    assert slow.dropped
    assert hub.subscribers == 1
    assert hub.dropped_subscribers == 1
    for expected in (1, 2, 3):
        assert (await slow.next_event()).position == expected
    with pytest.raises(SubscriberDroppedError):
        await slow.next_event()


def test_events_out_of_order_are_not_published_twice():
    hub = ChangeHub()
    hub.begin_at(0)
    subscriber = hub.subscribe(EVERYONE)
    hub.publish([event(2), event(2), event(1), event(3)])
    assert drain(subscriber) == [2, 3]


async def test_closing_the_hub_ends_every_subscription():
    hub = ChangeHub()
    subscriber = hub.subscribe(EVERYONE)
    hub.close()
    with pytest.raises(SubscriberDroppedError):
        await subscriber.next_event()


def test_ids_are_feed_positions_unless_the_hub_numbers_events_itself():
    hub = ChangeHub()
    hub.begin_at(10)
    assert (hub.event_id(12), hub.position_of("12")) == ("12", 12)
    with pytest.raises(InvalidEventIdError):
        hub.position_of("twelve")

    own = ChangeHub()
    own.begin_at(0, epoch="run1")
    own.publish([event(1), event(2)])
    assert own.event_id(2) == "run1.2"
    assert [e.position for e in own.subscribe(EVERYONE, after=own.position_of("run1.1")).replay] == [2]
    # An id of another replica's (or an earlier run's) numbering cannot be placed: reload.
    for foreign in ("run0.1", "12"):
        with pytest.raises(ResumeTooOldError):
            own.position_of(foreign)
