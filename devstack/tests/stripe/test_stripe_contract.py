"""Every object type the sandbox serves validates against Stripe's own OpenAPI description."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest
from stripe_contract import errors_of, without_nullable

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.stripe.testing import StripeSandboxHandle

pytestmark = pytest.mark.integration

# Every object type a sandbox endpoint can answer with (besides lists and errors).
SERVED_TYPES = {
    "account",
    "application_fee",
    "balance_transaction",
    "bank_account",
    "charge",
    "dispute",
    "event",
    "payment_intent",
    "payout",
    "refund",
    "transfer",
}


class Collected:
    """Objects seen in answers, by type (nested and expanded objects included)."""

    def __init__(self) -> None:
        self.by_type: defaultdict[str, dict[str, Any]] = defaultdict(dict)

    def add(self, obj: Any) -> None:
        if isinstance(obj, list):
            for item in obj:
                self.add(item)
        elif isinstance(obj, dict):
            kind = obj.get("object")
            if isinstance(kind, str) and kind != "list" and "id" in obj:
                # An expanded copy differs from the plain one: keep both.
                self.by_type[kind][f"{obj['id']}:{len(str(obj))}"] = obj
            for value in obj.values():
                self.add(value)


async def _all_pages(
    api: Callable[..., Any], path: str, account: str, collected: Collected, **extra: str
) -> None:
    query = {"limit": "100", **extra}
    while True:
        answer = await api(path, params=query, account=account)
        assert answer.status == 200, answer.body
        assert set(answer.body) == {"object", "data", "has_more", "url"}
        collected.add(answer.body["data"])
        if not answer.body["has_more"]:
            return
        query["starting_after"] = answer.body["data"][-1]["id"]


async def _collect(sandbox: StripeSandboxHandle, api: Callable[..., Any]) -> Collected:
    # Three days on, with refunds and disputes forced: every object type and payout status exists.
    sandbox.state.advance(minutes=3 * 24 * 60 + 14 * 60, refunds=3, disputes=3)
    world = sandbox.world
    assert world.refunds
    assert world.disputes
    collected = Collected()
    for account in world.accounts:
        collected.add((await api("/v1/account", account=account)).body)
        await _all_pages(api, "/v1/charges", account, collected, **{"expand[]": "data.balance_transaction"})
        await _all_pages(api, "/v1/payouts", account, collected, **{"expand[]": "data.destination"})
        await _all_pages(api, "/v1/events", account, collected)
    await _all_pages(api, "/v1/accounts", sandbox.platform_account_id, collected)
    await _all_pages(api, "/v1/transfers", sandbox.platform_account_id, collected)
    for account in world.accounts:
        # A connected account's `py_` payments with the transfer that made them (the enricher's listing).
        await _all_pages(api, "/v1/charges", account, collected, **{"expand[]": "data.source_transfer"})
    await _all_pages(api, "/v1/application_fees", sandbox.platform_account_id, collected)
    platform = sandbox.platform_account_id
    for table, path in (
        ("payment_intents", "/v1/payment_intents"),
        ("transfers", "/v1/transfers"),
        ("refunds", "/v1/refunds"),
        ("disputes", "/v1/disputes"),
        ("application_fees", "/v1/application_fees"),
    ):
        for object_id in list(getattr(world, table))[:40]:
            answer = await api(f"{path}/{object_id}", account=world.owner[object_id] or platform)
            assert answer.status == 200, answer.body
            collected.add(answer.body)
    intent = next(iter(world.payment_intents))
    expanded = await api(
        f"/v1/payment_intents/{intent}",
        params={"expand[]": "latest_charge.balance_transaction"},
        account=world.owner[intent],
    )
    collected.add(expanded.body)
    return collected


async def test_every_served_object_matches_stripes_schema(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    collected = await _collect(sandbox, api)
    assert set(collected.by_type) == SERVED_TYPES
    failures = [
        f"{kind} {obj['id']}: {error}"
        for kind, objects in sorted(collected.by_type.items())
        for obj in objects.values()
        for error in errors_of(kind, obj)
    ]
    assert failures == [], "\n".join(failures[:30])


async def test_separate_transfers_are_among_the_objects_checked(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    collected = await _collect(sandbox, api)
    grouped = [t for t in collected.by_type["transfer"].values() if t["transfer_group"]]
    assert grouped, "a separate transfer, with its transfer_group and source_transaction"
    assert all(t["source_transaction"] in sandbox.world.charges for t in grouped)
    made = {t["destination_payment"] for t in grouped}
    assert made <= {c["id"] for c in collected.by_type["charge"].values()}, "their destination payments"


async def test_error_answers_match_stripes_error_schema(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    answers = [
        await api("/v1/charges/ch_1NoSuchCharge"),
        await api("/v1/account", key="sk_test_not_this_sandboxes_key"),
        await api("/v1/payouts", key=sandbox.settings.restricted_key),
        await api("/v1/charges", params={"limit": "0"}),
        await api("/v1/nothing_here"),
    ]
    assert [a.status for a in answers] == [404, 401, 403, 400, 404]
    for answer in answers:
        assert errors_of("error", answer.body) == []


def test_the_schemas_reject_what_stripe_would_not_send() -> None:
    # The validator must be able to fail: a charge without its amount, a payout with a made-up status.
    charge = {"id": "ch_1", "object": "charge", "currency": "usd"}
    assert any("amount" in error for error in errors_of("charge", charge))
    assert errors_of("error", {"error": {"message": "no type"}})


def test_nullable_becomes_an_any_of_with_null() -> None:
    schema = {"properties": {"nullable": {"type": "string"}, "x": {"type": "string", "nullable": True}}}
    assert without_nullable(schema) == {
        "properties": {
            "nullable": {"type": "string"},
            "x": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        }
    }
