"""The StripeGateway on the official ``stripe`` package: an async ``StripeClient`` behind one rate gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from enricher.gateway import (
    CallCounter,
    ListPage,
    StripeAccessDeniedError,
    StripeGatewayError,
    StripeObject,
    StripeObjectMissingError,
    StripeRequestRejectedError,
    StripeUnavailableError,
)
from enricher.stripe_loop import StripeLoop
from enricher.throttle import RateGate, ThrottledHTTPClient

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from stripe import RequestOptions
    from stripe.params import (
        AccountListParams,
        BalanceTransactionListParams,
        ChargeListParams,
        ChargeListParamsCreated,
        PayoutListParams,
        TransferListParams,
    )

PAGE_SIZE = 100
"""Stripe's largest list page."""

CHARGE_LIST_EXPANSIONS = ("data.balance_transaction", "data.source_transfer")
"""A listed charge carries its fee, net and available_on, and a connected account's payment says
which platform charge its transfer paid for, so neither costs a call of its own."""

_T = TypeVar("_T")
_R = TypeVar("_R")
_NOT_FOUND = 404


class StripeApiGateway:
    """Every call the enricher makes, through one ``StripeClient`` and a process-wide rate gate.

    The client's requests are sent, throttled and decoded on a loop of their own thread
    (``enricher.stripe_loop``); the calls are awaited from the caller's loop.
    """

    def __init__(
        self,
        *,
        api_key: str,
        api_base: str | None = None,
        requests_per_second: float = 20.0,
        max_network_retries: int = 3,
        timeout_seconds: float = 30.0,
        gate: RateGate | None = None,
        on_response: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self._gate = gate or RateGate(requests_per_second=requests_per_second)
        self._http = ThrottledHTTPClient(
            gate=self._gate, timeout_seconds=timeout_seconds, on_response=on_response
        )
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            # A StripeClient retries nothing unless told: network errors, 409 and 5xx are worth it.
            max_network_retries=max_network_retries,
            base_addresses={"api": api_base} if api_base else None,
        )
        self._v1 = self._client.v1
        self._calls = CallCounter()
        self._stripe_loop = StripeLoop()

    @property
    def calls(self) -> CallCounter:
        """Calls made, by operation and account (each may be several HTTP requests when retried)."""
        return self._calls

    @property
    def http_requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self._http.requests_sent

    async def retrieve_platform_account(self) -> StripeObject:
        """``GET /v1/account``."""
        return await self._call("accounts.retrieve_current", None, self._v1.accounts.retrieve_current_async())

    async def retrieve_account(self, account_id: str) -> StripeObject:
        """``GET /v1/accounts/{id}``."""
        return await self._call("accounts.retrieve", None, self._v1.accounts.retrieve_async(account_id))

    async def list_connected_accounts(self, *, starting_after: str | None) -> ListPage:
        """``GET /v1/accounts``."""
        params: AccountListParams = {"limit": PAGE_SIZE}
        if starting_after:
            params["starting_after"] = starting_after
        return await self._page("accounts.list", None, "/v1/accounts", params)

    async def retrieve_bank_account(self, *, account_id: str, bank_account_id: str) -> StripeObject:
        """``GET /v1/accounts/{id}/external_accounts/{ba}``."""
        request = self._v1.accounts.external_accounts.retrieve_async(account_id, bank_account_id)
        return await self._call("external_accounts.retrieve", account_id, request)

    async def retrieve_payment_intent(self, payment_intent_id: str, *, account: str | None) -> StripeObject:
        """``GET /v1/payment_intents/{id}`` with the latest charge and its balance transaction."""
        request = self._v1.payment_intents.retrieve_async(
            payment_intent_id,
            {"expand": ["latest_charge.balance_transaction"]},
            _options(account),
        )
        return await self._call("payment_intents.retrieve", account, request)

    async def retrieve_charge(self, charge_id: str, *, account: str | None) -> StripeObject:
        """``GET /v1/charges/{id}`` with its balance transaction."""
        request = self._v1.charges.retrieve_async(
            charge_id, {"expand": ["balance_transaction"]}, _options(account)
        )
        return await self._call("charges.retrieve", account, request)

    async def retrieve_balance_transaction(self, transaction_id: str, *, account: str | None) -> StripeObject:
        """``GET /v1/balance_transactions/{id}``."""
        request = self._v1.balance_transactions.retrieve_async(transaction_id, None, _options(account))
        return await self._call("balance_transactions.retrieve", account, request)

    async def retrieve_transfer(self, transfer_id: str) -> StripeObject:
        """``GET /v1/transfers/{id}`` (platform)."""
        return await self._call("transfers.retrieve", None, self._v1.transfers.retrieve_async(transfer_id))

    async def retrieve_payout(self, payout_id: str, *, account: str | None) -> StripeObject:
        """``GET /v1/payouts/{id}``."""
        request = self._v1.payouts.retrieve_async(payout_id, None, _options(account))
        return await self._call("payouts.retrieve", account, request)

    async def list_transfers(self, *, transfer_group: str, starting_after: str | None) -> ListPage:
        """``GET /v1/transfers?transfer_group=..`` (platform)."""
        params: TransferListParams = {"limit": PAGE_SIZE, "transfer_group": transfer_group}
        if starting_after:
            params["starting_after"] = starting_after
        return await self._page("transfers.list", None, "/v1/transfers", params)

    async def list_charges(
        self,
        *,
        account: str | None,
        created_after: int | None,
        starting_after: str | None,
        created_before: int | None = None,
    ) -> ListPage:
        """``GET /v1/charges?created[gt]=..&created[lt]=..`` with the balance transaction and source
        transfer expanded."""
        params: ChargeListParams = {"limit": PAGE_SIZE, "expand": list(CHARGE_LIST_EXPANSIONS)}
        created: ChargeListParamsCreated = {}
        if created_after is not None:
            created["gt"] = created_after
        if created_before is not None:
            created["lt"] = created_before
        if created:
            params["created"] = created
        if starting_after:
            params["starting_after"] = starting_after
        return await self._page("charges.list", account, "/v1/charges", params)

    async def list_payouts(
        self, *, account: str | None, created_after: int | None, starting_after: str | None
    ) -> ListPage:
        """``GET /v1/payouts?created[gt]=..``."""
        params: PayoutListParams = {"limit": PAGE_SIZE}
        if created_after is not None:
            params["created"] = {"gt": created_after}
        if starting_after:
            params["starting_after"] = starting_after
        return await self._page("payouts.list", account, "/v1/payouts", params)

    async def list_payout_transactions(
        self, *, account: str | None, payout_id: str, starting_after: str | None
    ) -> ListPage:
        """``GET /v1/balance_transactions?payout=po_..``."""
        params: BalanceTransactionListParams = {"limit": PAGE_SIZE, "payout": payout_id}
        if starting_after:
            params["starting_after"] = starting_after
        return await self._page("balance_transactions.list", account, "/v1/balance_transactions", params)

    async def close(self) -> None:
        """Close the HTTP session, then stop the client's loop."""
        try:
            await self._stripe_loop.run(self._http.close_async())  # type: ignore[no-untyped-call]  # unannotated
        finally:
            await self._stripe_loop.close()

    async def _page(
        self, operation: str, account: str | None, path: str, params: Mapping[str, Any]
    ) -> ListPage:
        # The list's JSON as Stripe sent it, through the client's raw request (same requestor, retries,
        # errors and rate gate): building a StripeObject per listed item and turning it back into a
        # dict was a fifth of a cold start's CPU, and the enricher reads only plain dicts.
        request = self._client.raw_request_async("get", path, **params, **_options(account))
        return await self._send(operation, account, request, _list_page)

    async def _call(
        self, operation: str, account: str | None, request: Awaitable[stripe.StripeObject]
    ) -> StripeObject:
        return await self._send(operation, account, request, _as_dict)

    async def _send(
        self, operation: str, account: str | None, request: Awaitable[_T], decode: Callable[[_T], _R]
    ) -> _R:
        """``request`` sent and its answer decoded on the client's loop."""
        self._calls.record(operation, account=account)

        async def sent() -> _R:
            return decode(await request)

        try:
            return await self._stripe_loop.run(sent())
        except stripe.StripeError as error:
            raise gateway_error(operation, error) from error


def _list_page(response: stripe.StripeResponse) -> ListPage:
    listed: Any = response.data  # the list's JSON object
    return ListPage(data=list(listed["data"]), has_more=bool(listed["has_more"]))


def _as_dict(found: stripe.StripeObject) -> StripeObject:
    return found.to_dict()


def _options(account: str | None) -> RequestOptions:
    return {"stripe_account": account} if account else {}


def gateway_error(operation: str, error: stripe.StripeError) -> StripeGatewayError:
    """The gateway's error for a stripe package error: missing, retry later, or never."""
    status = error.http_status
    code = error.code
    description = f"{operation}: {type(error).__name__} (status {status}, code {code})"
    if isinstance(error, stripe.InvalidRequestError) and (code == "resource_missing" or status == _NOT_FOUND):
        return StripeObjectMissingError(description, status=status, code=code)
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return StripeAccessDeniedError(description, status=status, code=code)
    if isinstance(error, stripe.RateLimitError | stripe.APIConnectionError | stripe.APIError):
        retry_after = _header_seconds(error.headers, "retry-after")
        return StripeUnavailableError(description, status=status, code=code, retry_after_seconds=retry_after)
    if isinstance(error, stripe.InvalidRequestError):
        return StripeRequestRejectedError(description, status=status, code=code)
    # Idempotency, signature and other errors have no place in read-only calls: treat as transient.
    return StripeUnavailableError(description, status=status, code=code)


def _header_seconds(headers: Any, name: str) -> float | None:
    value = headers.get(name) if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
