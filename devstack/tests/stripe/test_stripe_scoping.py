"""Account scoping by `Stripe-Account`, and key errors shaped as Stripe shapes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import stripe

from devstack.scenario import Route

if TYPE_CHECKING:
    from collections.abc import Callable

    from devstack.stripe.testing import StripeSandboxHandle

pytestmark = pytest.mark.integration


def _direct(sandbox: StripeSandboxHandle) -> Any:
    return next(f for f in sandbox.world.payments.values() if f.route is Route.DIRECT)


async def test_an_object_is_missing_from_every_other_account(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient, api: Callable[..., Any]
) -> None:
    facts = _direct(sandbox)
    found = await client.v1.charges.retrieve_async(
        facts.charge_id, options={"stripe_account": facts.account_id}
    )
    assert found.id == facts.charge_id
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.charges.retrieve_async(facts.charge_id)  # the platform does not own it
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    other = next(
        a for a in sandbox.world.accounts if a not in {facts.account_id, sandbox.platform_account_id}
    )
    answer = await api(f"/v1/charges/{facts.charge_id}", account=other)
    assert answer.status == 404
    assert answer.body == {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such charge: '{facts.charge_id}'",
            "param": "id",
        }
    }
    assert answer.headers["Stripe-Should-Retry"] == "false"


async def test_a_connected_account_sees_only_itself(
    sandbox: StripeSandboxHandle, api: Callable[..., Any]
) -> None:
    connected = [a for a in sandbox.world.accounts if a != sandbox.platform_account_id]
    answer = await api(f"/v1/accounts/{connected[1]}", account=connected[0])
    assert answer.status == 404
    assert answer.body["error"]["code"] == "resource_missing"
    answer = await api(f"/v1/accounts/{connected[0]}", account=connected[0])
    assert answer.status == 200


async def test_an_unknown_connected_account_is_refused(api: Callable[..., Any]) -> None:
    answer = await api("/v1/charges", account="acct_1NotConnectedHere")
    assert answer.status == 403
    assert answer.body["error"]["type"] == "invalid_request_error"
    assert "acct_1NotConnectedHere" in answer.body["error"]["message"]


async def test_a_bad_key_gets_stripes_401(
    make_client: Callable[..., stripe.StripeClient], api: Callable[..., Any]
) -> None:
    with pytest.raises(stripe.AuthenticationError) as refused:
        await make_client(api_key="sk_test_not_a_key_of_this_sandbox").v1.accounts.retrieve_current_async()
    assert refused.value.http_status == 401
    answer = await api("/v1/account", key="sk_test_not_a_key_of_this_sandbox")
    assert answer.body["error"]["type"] == "invalid_request_error"
    # Stripe never echoes a whole key.
    assert "sk_test_not_a_key_of_this_sandbox" not in answer.body["error"]["message"]
    assert answer.body["error"]["message"].endswith("dbox")


async def test_a_restricted_key_reads_only_what_it_is_allowed(
    sandbox: StripeSandboxHandle, make_client: Callable[..., stripe.StripeClient]
) -> None:
    restricted = make_client(api_key=sandbox.settings.restricted_key)
    facts = next(f for f in sandbox.world.payments.values() if f.route is Route.PLATFORM)
    charge = await restricted.v1.charges.retrieve_async(facts.charge_id)
    assert charge.id == facts.charge_id
    with pytest.raises(stripe.PermissionError) as refused:
        await restricted.v1.payouts.list_async()
    assert refused.value.http_status == 403
    assert "rak_payout_read" in str(refused.value.user_message)


async def test_a_revoked_key_stops_working_until_restored(
    sandbox: StripeSandboxHandle, client: stripe.StripeClient, http: Any
) -> None:
    await client.v1.accounts.retrieve_current_async()
    control = f"{sandbox.base_url}/_sandbox/keys"
    async with http.post(f"{control}/revoke", json={"key": sandbox.settings.secret_key}) as response:
        assert response.status == 200
    with pytest.raises(stripe.AuthenticationError) as refused:
        await client.v1.accounts.retrieve_current_async()
    assert "Expired API Key" in str(refused.value.user_message)
    async with http.post(f"{control}/restore") as response:
        assert response.status == 200
    await client.v1.accounts.retrieve_current_async()


async def test_unknown_paths_and_parameters_answer_in_stripes_shape(api: Callable[..., Any]) -> None:
    answer = await api("/v1/nothing_here")
    assert answer.status == 404
    assert answer.body["error"]["type"] == "invalid_request_error"
    answer = await api("/v1/charges", params={"colour": "blue"})
    assert answer.status == 400
    assert answer.body["error"]["param"] == "colour"
