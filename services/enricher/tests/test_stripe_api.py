"""The real gateway over HTTP: what it sends, how it maps Stripe's errors, how it honours 429s.

A small local aiohttp server stands in for the few answers each test needs; the Stripe sandbox
contract tests drive the same gateway against the full stand-in.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import heapq
import itertools
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from stripe_shapes import balance_transaction, charge

from enricher.gateway import (
    StripeAccessDeniedError,
    StripeObjectMissingError,
    StripeRequestRejectedError,
    StripeUnavailableError,
    asking_ahead,
    call_priority,
    listing_page,
    listing_payouts,
)
from enricher.stripe_api import StripeApiGateway
from enricher.throttle import RateGate

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from contextlib import AbstractContextManager


@dataclass
class ScriptedStripe:
    """Answers each path with the next scripted (status, body, headers), then repeats the last one."""

    script: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    requests: list[web.Request] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        answers = self.script[request.path]
        status, body, headers = answers.pop(0) if len(answers) > 1 else answers[0]
        return web.Response(
            status=status, text=json.dumps(body), content_type="application/json", headers=headers
        )


def _error(kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": "scripted"}}


@pytest.fixture
async def stripe_server():
    scripted = ScriptedStripe()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", scripted.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield scripted, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def gateway(stripe_server):
    _, base = stripe_server
    gateway = StripeApiGateway(
        api_key="sk_test_local", api_base=base, requests_per_second=1000, max_network_retries=2
    )
    yield gateway
    await gateway.close()


async def test_a_connected_retrieve_sends_the_account_header_and_expands_the_balance_transaction(
    stripe_server, gateway
):
    scripted, _ = stripe_server
    body = charge("ch_1", balance_txn=balance_transaction("txn_1", source="ch_1"))
    scripted.script["/v1/charges/ch_1"] = [(200, body, {})]
    found = await gateway.retrieve_charge("ch_1", account="acct_org1")
    assert found["balance_transaction"]["net"] == 1037
    request = scripted.requests[0]
    assert request.headers["Stripe-Account"] == "acct_org1"
    assert request.headers["Authorization"] == "Bearer sk_test_local"
    assert request.query.getall("expand[0]") == ["balance_transaction"]
    assert gateway.calls.by_account == {"acct_org1": 1}


async def test_a_platform_call_sends_no_account_header(stripe_server, gateway):
    scripted, _ = stripe_server
    scripted.script["/v1/transfers/tr_1"] = [(200, {"id": "tr_1", "object": "transfer"}, {})]
    await gateway.retrieve_transfer("tr_1")
    assert "Stripe-Account" not in scripted.requests[0].headers
    assert gateway.calls.by_account == {"platform": 1}


async def test_list_charges_pages_by_created_cursor(stripe_server, gateway):
    scripted, _ = stripe_server
    page = {
        "object": "list",
        "data": [charge("ch_2"), charge("ch_1")],
        "has_more": True,
        "url": "/v1/charges",
    }
    scripted.script["/v1/charges"] = [(200, page, {})]
    listed = await gateway.list_charges(account="acct_1", created_after=1_700_000_000, starting_after="ch_9")
    assert [c["id"] for c in listed.data] == ["ch_2", "ch_1"]
    assert listed.has_more
    assert listed.last_id == "ch_1"
    query = scripted.requests[0].query
    assert query["created[gt]"] == "1700000000"
    assert query["starting_after"] == "ch_9"
    assert query["limit"] == "100"
    assert query["expand[0]"] == "data.balance_transaction"
    assert query["expand[1]"] == "data.source_transfer"


async def test_payout_contents_are_listed_by_payout(stripe_server, gateway):
    scripted, _ = stripe_server
    page = {"object": "list", "data": [], "has_more": False, "url": "/v1/balance_transactions"}
    scripted.script["/v1/balance_transactions"] = [(200, page, {})]
    await gateway.list_payout_transactions(account="acct_1", payout_id="po_1", starting_after=None)
    assert scripted.requests[0].query["payout"] == "po_1"


async def test_an_object_of_another_account_is_missing(stripe_server, gateway):
    scripted, _ = stripe_server
    scripted.script["/v1/payment_intents/pi_1"] = [
        (404, _error("invalid_request_error", "resource_missing"), {})
    ]
    with pytest.raises(StripeObjectMissingError) as raised:
        await gateway.retrieve_payment_intent("pi_1", account="acct_other")
    assert raised.value.code == "resource_missing"


@pytest.mark.parametrize("status", [401, 403])
async def test_a_bad_key_or_missing_permission_is_access_denied(stripe_server, gateway, status):
    scripted, _ = stripe_server
    kind = "invalid_request_error"
    scripted.script["/v1/payouts/po_1"] = [(status, _error(kind), {})]
    with pytest.raises(StripeAccessDeniedError):
        await gateway.retrieve_payout("po_1", account=None)


async def test_a_malformed_request_is_rejected_not_retried(stripe_server, gateway):
    scripted, _ = stripe_server
    scripted.script["/v1/payouts/po_1"] = [(400, _error("invalid_request_error", "parameter_invalid"), {})]
    with pytest.raises(StripeRequestRejectedError):
        await gateway.retrieve_payout("po_1", account=None)
    assert len(scripted.requests) == 1


async def test_429s_are_waited_out_and_resent(stripe_server, gateway):
    scripted, _ = stripe_server
    limited = (429, _error("invalid_request_error", "rate_limit"), {"Retry-After": "0"})
    scripted.script["/v1/payouts/po_1"] = [limited, limited, (200, {"id": "po_1", "object": "payout"}, {})]
    payout = await gateway.retrieve_payout("po_1", account=None)
    assert payout["id"] == "po_1"
    assert len(scripted.requests) == 3
    assert gateway.http_requests == 3
    assert gateway.calls.total == 1


async def test_a_429_stripe_says_not_to_retry_is_not_resent(stripe_server, gateway):
    scripted, _ = stripe_server
    limited = (429, _error("invalid_request_error", "rate_limit"), {"Stripe-Should-Retry": "false"})
    scripted.script["/v1/payouts/po_1"] = [limited, (200, {"id": "po_1", "object": "payout"}, {})]
    with pytest.raises(StripeUnavailableError) as raised:
        await gateway.retrieve_payout("po_1", account=None)
    assert raised.value.status == 429
    assert len(scripted.requests) == 1


async def test_a_5xx_is_retried_by_the_client_then_succeeds(stripe_server, gateway):
    scripted, _ = stripe_server
    scripted.script["/v1/accounts/acct_1"] = [
        (500, _error("api_error"), {}),
        (200, {"id": "acct_1", "object": "account"}, {}),
    ]
    assert (await gateway.retrieve_account("acct_1"))["id"] == "acct_1"
    assert len(scripted.requests) == 2


async def test_a_5xx_that_outlasts_the_retries_is_unavailable(stripe_server, gateway):
    scripted, _ = stripe_server
    scripted.script["/v1/accounts/acct_1"] = [(503, _error("api_error"), {})]
    with pytest.raises(StripeUnavailableError):
        await gateway.retrieve_account("acct_1")
    assert len(scripted.requests) == 3  # the first try and max_network_retries=2


class VirtualTime:
    """A clock and a sleep for the gate: time moves only to the next sleeper's wake-up, so no test waits."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self._wakeups: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._wakeups, (self.now + max(seconds, 0.0), next(self._order), woken))
        await woken

    async def run(self, *work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` concurrently, moving the clock whenever every task waits for it."""
        tasks = [asyncio.ensure_future(job) for job in work]
        while not all(task.done() for task in tasks):
            for _ in range(20):  # let every task run until it sleeps or finishes
                await asyncio.sleep(0)
            if self._wakeups:
                self.now, _, woken = heapq.heappop(self._wakeups)
                if not woken.done():  # a sleeper cancelled meanwhile
                    woken.set_result(None)
        await asyncio.gather(*tasks)


def _busiest_second(sends: list[float], window: float = 1.0) -> int:
    """The most sends in any window of ``window`` seconds (as a sliding-window limiter counts them)."""
    ordered = sorted(sends)
    return max(bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered))


def naming(gate: RateGate) -> tuple[list[str], Callable[[str], Coroutine[Any, Any, None]]]:
    """The names of the requests in the order they went through the gate, and a request that names itself."""
    sent: list[str] = []

    async def send(name: str) -> None:
        async with gate.slot():
            sent.append(name)

    return sent, send


def recording(
    gate: RateGate, time: VirtualTime
) -> tuple[list[float], Callable[[], Coroutine[Any, Any, None]]]:
    """The times at which requests went through the gate, and a request that records its own."""
    sends: list[float] = []

    async def send() -> None:
        async with gate.slot():
            sends.append(time.now)

    return sends, send


class TestRateGate:
    async def test_a_429_holds_every_request_back_for_the_wait(self):
        time = VirtualTime()
        gate = RateGate(requests_per_second=1000, clock=time.clock, sleep=time.sleep)
        sends, send = recording(gate, time)

        await time.run(send())
        gate.close_for(2.5)
        await time.run(send())
        assert sends == [1_000.0, 1_002.5]
        assert gate.pauses == 1
        assert gate.closed_seconds == 2.5

    async def test_no_second_holds_more_sends_than_the_rate_after_idle_bursts_and_429_pauses(self):
        time = VirtualTime()
        gate = RateGate(requests_per_second=25, clock=time.clock, sleep=time.sleep)
        sends, send = recording(gate, time)

        # A burst of three seconds' worth after an idle moment, many waiting at once.
        await time.run(*(send() for _ in range(75)))
        time.now += 10.0  # idle
        await time.run(*(send() for _ in range(75)))
        # A 429 in the middle of a burst: the gate closes, and reopens without a burst above the rate.
        time.now += 10.0

        async def burst_with_a_429() -> None:
            first = [asyncio.ensure_future(send()) for _ in range(30)]
            await asyncio.gather(*first)
            gate.close_for(0.5)
            await asyncio.gather(*(send() for _ in range(45)))

        await time.run(burst_with_a_429())
        assert len(sends) == 225
        assert _busiest_second(sends) == 25
        # Nor slower than that: a burst of 75 answered at once took three windows.
        assert sends[74] - sends[0] == 2.0

    async def test_a_slot_is_free_again_a_second_after_its_answer_not_its_send(self):
        # Stripe counts a request somewhere between its send and its answer.
        time = VirtualTime()
        gate = RateGate(requests_per_second=2, clock=time.clock, sleep=time.sleep)
        sends: list[float] = []

        async def send(answered_after: float) -> None:
            async with gate.slot():
                sends.append(time.now)
                await time.sleep(answered_after)

        await time.run(send(0.5), send(0.0), send(0.0), send(0.0), send(0.0))
        assert sends == [1_000.0, 1_000.0, 1_001.0, 1_001.5, 1_002.0]

    async def test_a_waiter_that_stops_waiting_passes_its_turn_on(self):
        time = VirtualTime()
        gate = RateGate(requests_per_second=1, clock=time.clock, sleep=time.sleep)
        sent, send = naming(gate)

        async def arriving() -> None:
            first = asyncio.ensure_future(send("first"))
            await asyncio.sleep(0)
            leaving = asyncio.ensure_future(send("leaving"))
            staying = asyncio.ensure_future(send("staying"))
            await asyncio.sleep(0)
            leaving.cancel()
            await asyncio.gather(first, staying)

        await time.run(arriving())
        assert sent == ["first", "staying"]

    async def test_calls_asked_ahead_wait_behind_the_calls_a_message_waits_for(self):
        time = VirtualTime()
        gate = RateGate(requests_per_second=1, clock=time.clock, sleep=time.sleep)
        sent, send = naming(gate)

        async def ahead(name: str) -> None:
            with asking_ahead():
                await send(name)

        async def arriving() -> None:
            first = asyncio.ensure_future(send("first"))
            await asyncio.sleep(0)
            # Queued in this order while the first holds the only slot.
            waiting = [asyncio.ensure_future(ahead("ahead 1")), asyncio.ensure_future(ahead("ahead 2"))]
            await asyncio.sleep(0)
            waiting += [asyncio.ensure_future(send("needed 1")), asyncio.ensure_future(send("needed 2"))]
            await asyncio.gather(first, *waiting)

        await time.run(arriving())
        assert sent == ["first", "needed 1", "needed 2", "ahead 1", "ahead 2"]

    async def test_payout_listings_wait_behind_the_other_calls_a_message_waits_for(self):
        # A charges listing holds up every payment of its account; a payout's contents, only its own.
        time = VirtualTime()
        gate = RateGate(requests_per_second=1, clock=time.clock, sleep=time.sleep)
        sent, send = naming(gate)

        async def ranked(name: str, scope: Callable[[], AbstractContextManager[None]], number: int) -> None:
            with scope(), listing_page(number):
                await send(name)

        async def arriving() -> None:
            first = asyncio.ensure_future(send("first"))
            await asyncio.sleep(0)
            waiting = [
                asyncio.ensure_future(ranked("asked ahead", asking_ahead, 1)),
                asyncio.ensure_future(ranked("payout contents, page 9", listing_payouts, 9)),
                asyncio.ensure_future(ranked("charges, page 1", nullcontext, 1)),
                asyncio.ensure_future(ranked("payouts, page 1", listing_payouts, 1)),
            ]
            await asyncio.gather(first, *waiting)

        await time.run(arriving())
        assert sent == [
            "first",
            "charges, page 1",
            "payout contents, page 9",
            "payouts, page 1",
            "asked ahead",
        ]

    async def test_the_next_page_of_the_longest_listing_goes_first(self):
        # A listing's pages come one after the other: the longest one is what every waiter waits for.
        time = VirtualTime()
        gate = RateGate(requests_per_second=1, clock=time.clock, sleep=time.sleep)
        sent, send = naming(gate)

        async def page(name: str, number: int) -> None:
            with listing_page(number):
                await send(name)

        async def arriving() -> None:
            first = asyncio.ensure_future(send("first"))
            await asyncio.sleep(0)
            waiting = [
                asyncio.ensure_future(page("short, page 1", 1)),
                asyncio.ensure_future(page("long, page 40", 40)),
                asyncio.ensure_future(page("middle, page 3", 3)),
            ]
            await asyncio.gather(first, *waiting)

        await time.run(arriving())
        assert sent == ["first", "long, page 40", "middle, page 3", "short, page 1"]

    @pytest.mark.parametrize(("rate", "most_in_a_second", "every"), [(2.5, 2, 1.0), (0.5, 1, 2.0)])
    async def test_a_fractional_rate_is_rounded_down_to_whole_requests(self, rate, most_in_a_second, every):
        time = VirtualTime()
        gate = RateGate(requests_per_second=rate, clock=time.clock, sleep=time.sleep)
        sends, send = recording(gate, time)

        await time.run(*(send() for _ in range(6)))
        assert _busiest_second(sends) == most_in_a_second
        assert sends[most_in_a_second] - sends[0] == every

    def test_the_rate_must_be_positive(self):
        with pytest.raises(ValueError, match="positive"):
            RateGate(requests_per_second=0)


class _Suspend:
    """An awaitable that suspends its coroutine once, with no loop needed."""

    def __await__(self):
        yield


def test_a_listing_abandoned_with_its_loop_is_closed_later_from_another_context_without_error():
    # A test's (or a stopping service's) loop can close with a listing's task still pending; the
    # garbage collector closes that coroutine later, in whatever context is running then.
    async def listing() -> None:
        with listing_payouts(), listing_page(3):
            await _Suspend()

    coroutine = listing()
    contextvars.copy_context().run(coroutine.send, None)  # suspended inside, as in its own task
    coroutine.close()  # raised ValueError ("created in a different Context") before
    assert call_priority() == (0, 0)  # and the context it was closed in is left as it was
