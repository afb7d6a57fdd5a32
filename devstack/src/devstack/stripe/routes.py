"""The Stripe API handlers: parse the query, check the caller may read it, shape Stripe's answer."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devstack.stripe.appkeys import STATE_KEY
from devstack.stripe.context import Caller, caller
from devstack.stripe.errors import StripeError, invalid_parameter, resource_missing
from devstack.stripe.expand import expand, expand_list, expand_paths
from devstack.stripe.listing import (
    SortedObjects,
    list_page,
    page_request,
    parameter_name,
    range_filter,
    reject_unknown,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from devstack.stripe.state import WorldView

routes = web.RouteTableDef()

_RETRIEVE_PARAMETERS = frozenset({"expand"})
_PAGING = frozenset({"expand", "limit", "starting_after", "ending_before"})

# table -> (the object's name in Stripe's messages, the permission resource)
_KINDS = {
    "payment_intents": ("payment_intent", "payment_intents"),
    "charges": ("charge", "charges"),
    "balance_transactions": ("balance_transaction", "balance_transactions"),
    "transfers": ("transfer", "transfers"),
    "application_fees": ("application fee", "application_fees"),
    "refunds": ("refund", "refunds"),
    "disputes": ("dispute", "disputes"),
    "payouts": ("payout", "payouts"),
}


def _view(request: web.Request) -> WorldView:
    return request.app[STATE_KEY].view


def _resolver(view: WorldView, who: Caller) -> Callable[[str, bool], dict[str, Any] | None]:
    def resolve(object_id: str, cross_account: bool) -> dict[str, Any] | None:  # noqa: FBT001
        return view.find(object_id, account=who.account_id, cross_account=cross_account)

    return resolve


def _object_response(request: web.Request, obj: dict[str, Any]) -> web.Response:
    paths = expand_paths(request.query.items())
    if paths:
        obj = expand(obj, paths, _resolver(_view(request), caller(request)))
    return web.json_response(obj)


def _retrieve(request: web.Request, table: str) -> web.Response:
    reject_unknown(request.query, _RETRIEVE_PARAMETERS)
    who = caller(request)
    kind, resource = _KINDS[table]
    who.require(resource)
    object_id = request.match_info["id"]
    found = _view(request).owned(table, object_id, account=who.account_id)
    if found is None:
        raise resource_missing(kind, object_id)
    return _object_response(request, found)


def _list(
    request: web.Request,
    table: str,
    *,
    filters: Mapping[str, Callable[[dict[str, Any]], bool] | None],
    objects: SortedObjects | None = None,
) -> web.Response:
    """One page of the caller's objects of `table` that pass every given filter."""
    who = caller(request)
    kind = _KINDS[table][0]
    view = _view(request)
    tests = [test for test in filters.values() if test is not None]

    def find(object_id: str, param: str) -> dict[str, Any]:
        found = view.owned(table, object_id, account=who.account_id)
        if found is None:
            raise resource_missing(kind, object_id, param=param, status=400)
        return found

    page = list_page(
        objects if objects is not None else view.sorted_list(table, account=who.account_id),
        page_request(request.query),
        url=f"/v1/{table}",
        keep=(lambda obj: all(test(obj) for test in tests)) if tests else None,
        find=find,
    )
    return _list_response(request, page)


def _list_response(request: web.Request, page: dict[str, Any]) -> web.Response:
    paths = expand_paths(request.query.items())
    if paths:
        page = expand_list(page, paths, _resolver(_view(request), caller(request)))
    return web.json_response(page)


def _on_field(name: str, test: Callable[[int], bool] | None) -> Callable[[dict[str, Any]], bool] | None:
    return None if test is None else lambda obj: test(obj[name])


def _equals(query: Mapping[str, str], name: str) -> Callable[[dict[str, Any]], bool] | None:
    value = query.get(name)
    return None if value is None else lambda obj: obj.get(name) == value


# -- accounts ------------------------------------------------------------------------------------


def _visible_account(request: web.Request, account_id: str) -> dict[str, Any]:
    who = caller(request)
    who.require("accounts")
    account = _view(request).world.accounts.get(account_id)
    # A connected account sees itself only; the platform sees itself and every connected account.
    if account is None or not (who.is_platform or account_id == who.account_id):
        raise resource_missing("account", account_id, param="account")
    return account


@routes.get("/v1/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    """The platform's connected accounts, newest first."""
    reject_unknown(request.query, _PAGING | {"created"})
    who = caller(request)
    who.require("accounts")
    view = _view(request)
    # Only a platform has connected accounts; a connected account's list is empty.
    accounts = view.connected_accounts if who.is_platform else SortedObjects(())

    def find(account_id: str, param: str) -> dict[str, Any]:
        if account_id not in view.world.accounts or account_id == who.platform_account_id:
            raise resource_missing("account", account_id, param=param, status=400)
        return view.world.accounts[account_id]

    created = _on_field("created", range_filter(request.query, "created"))
    page = list_page(
        accounts,
        page_request(request.query),
        url="/v1/accounts",
        keep=created,
        find=find,
    )
    return _list_response(request, page)


@routes.get("/v1/account")
async def retrieve_own_account(request: web.Request) -> web.Response:
    """The account the call acts as."""
    reject_unknown(request.query, _RETRIEVE_PARAMETERS)
    return _object_response(request, _visible_account(request, caller(request).account_id))


@routes.get("/v1/accounts/{id}")
async def retrieve_account(request: web.Request) -> web.Response:
    """One account: the platform's own or one of its connected accounts."""
    reject_unknown(request.query, _RETRIEVE_PARAMETERS)
    return _object_response(request, _visible_account(request, request.match_info["id"]))


@routes.get("/v1/accounts/{account}/external_accounts/{id}")
async def retrieve_external_account(request: web.Request) -> web.Response:
    """The bank account an account is paid out to."""
    reject_unknown(request.query, _RETRIEVE_PARAMETERS)
    account = _visible_account(request, request.match_info["account"])
    bank_id = request.match_info["id"]
    view = _view(request)
    bank = view.world.bank_accounts.get(bank_id)
    if bank is None or view.world.owner[bank_id] != account["id"]:
        raise resource_missing("external account", bank_id)
    return _object_response(request, bank)


# -- payments ------------------------------------------------------------------------------------


@routes.get("/v1/payment_intents/{id}")
async def retrieve_payment_intent(request: web.Request) -> web.Response:
    """A PaymentIntent of the calling account."""
    return _retrieve(request, "payment_intents")


@routes.get("/v1/charges/{id}")
async def retrieve_charge(request: web.Request) -> web.Response:
    """A charge (or a destination charge's `py_` payment) of the calling account."""
    return _retrieve(request, "charges")


@routes.get("/v1/charges")
async def list_charges(request: web.Request) -> web.Response:
    """The calling account's charges, newest first; `created` and `payment_intent` filters."""
    query = request.query
    reject_unknown(query, _PAGING | {"created", "payment_intent"})
    caller(request).require("charges")
    filters = {
        "created": _on_field("created", range_filter(query, "created")),
        "payment_intent": _equals(query, "payment_intent"),
    }
    return _list(request, "charges", filters=filters)


@routes.get("/v1/refunds/{id}")
async def retrieve_refund(request: web.Request) -> web.Response:
    """A refund of the calling account."""
    return _retrieve(request, "refunds")


@routes.get("/v1/disputes/{id}")
async def retrieve_dispute(request: web.Request) -> web.Response:
    """A dispute of the calling account."""
    return _retrieve(request, "disputes")


@routes.get("/v1/application_fees/{id}")
async def retrieve_application_fee(request: web.Request) -> web.Response:
    """An application fee the platform collected."""
    return _retrieve(request, "application_fees")


@routes.get("/v1/application_fees")
async def list_application_fees(request: web.Request) -> web.Response:
    """The platform's application fees, newest first; `charge` and `created` filters."""
    query = request.query
    reject_unknown(query, _PAGING | {"charge", "created"})
    caller(request).require("application_fees")
    filters = {
        "created": _on_field("created", range_filter(query, "created")),
        "charge": _equals(query, "charge"),
    }
    return _list(request, "application_fees", filters=filters)


@routes.get("/v1/transfers")
async def list_transfers(request: web.Request) -> web.Response:
    """The transfers the calling account made, newest first; `created`, `destination`, `transfer_group`.

    These are the filters Stripe's list takes: there is no `source_transaction` filter, so the way
    from a separate transfer's charge to its transfer is the charge's `transfer_group`.
    """
    query = request.query
    reject_unknown(query, _PAGING | {"created", "destination", "transfer_group"})
    caller(request).require("transfers")
    filters = {
        "created": _on_field("created", range_filter(query, "created")),
        "destination": _equals(query, "destination"),
        "transfer_group": _equals(query, "transfer_group"),
    }
    return _list(request, "transfers", filters=filters)


@routes.get("/v1/transfers/{id}")
async def retrieve_transfer(request: web.Request) -> web.Response:
    """A transfer the platform made."""
    return _retrieve(request, "transfers")


# -- balance and payouts -------------------------------------------------------------------------


@routes.get("/v1/balance_transactions/{id}")
async def retrieve_balance_transaction(request: web.Request) -> web.Response:
    """A balance transaction of the calling account."""
    return _retrieve(request, "balance_transactions")


@routes.get("/v1/balance_transactions")
async def list_balance_transactions(request: web.Request) -> web.Response:
    """The calling account's balance transactions; `payout=po_...` lists what one automatic payout paid."""
    query = request.query
    reject_unknown(query, _PAGING | {"payout", "type", "source", "created", "available_on"})
    who = caller(request)
    who.require("balance_transactions")
    filters = {
        "created": _on_field("created", range_filter(query, "created")),
        "available_on": _on_field("available_on", range_filter(query, "available_on")),
        "type": _equals(query, "type"),
        "source": _equals(query, "source"),
    }
    payout_id = query.get("payout")
    if payout_id is None:
        return _list(request, "balance_transactions", filters=filters)
    view = _view(request)
    payout = view.owned("payouts", payout_id, account=who.account_id)
    if payout is None:
        raise resource_missing("payout", payout_id, param="payout")
    if not payout["automatic"]:
        raise StripeError(
            "Balance transaction history can only be filtered on automatic transfers, not manual.",
            param="payout",
            should_retry=False,
        )
    settled = view.world.payout_balance_transactions[payout_id]
    objects = SortedObjects(view.world.balance_transactions[txn_id] for txn_id in settled)
    return _list(request, "balance_transactions", filters=filters, objects=objects)


@routes.get("/v1/payouts/{id}")
async def retrieve_payout(request: web.Request) -> web.Response:
    """A payout of the calling account."""
    return _retrieve(request, "payouts")


@routes.get("/v1/payouts")
async def list_payouts(request: web.Request) -> web.Response:
    """The calling account's payouts, newest first; `status`, `arrival_date`, `created`, `destination`."""
    query = request.query
    reject_unknown(query, _PAGING | {"status", "arrival_date", "created", "destination"})
    caller(request).require("payouts")
    filters = {
        "created": _on_field("created", range_filter(query, "created")),
        "arrival_date": _on_field("arrival_date", range_filter(query, "arrival_date")),
        "status": _equals(query, "status"),
        "destination": _equals(query, "destination"),
    }
    return _list(request, "payouts", filters=filters)


# -- events --------------------------------------------------------------------------------------


def _event_types(query: Mapping[str, str]) -> Callable[[dict[str, Any]], bool] | None:
    """`type` (a `*` wildcard allowed, as in `payout.*`) and `types[]`, as one test."""
    single = query.get("type")
    several = [value for key, value in query.items() if parameter_name(key) == "types"]
    if single is not None and several:
        raise invalid_parameter("types", "You may only specify one of these parameters: type, types.")
    patterns = [single] if single is not None else several
    if not patterns:
        return None

    def matches(event: dict[str, Any]) -> bool:
        return any(fnmatch.fnmatchcase(event["type"], pattern) for pattern in patterns)

    return matches


def _delivery_filter(
    query: Mapping[str, str], request: web.Request
) -> Callable[[dict[str, Any]], bool] | None:
    text = query.get("delivery_success")
    if text is None:
        return None
    if text not in {"true", "false"}:
        raise invalid_parameter("delivery_success", "Invalid boolean: must be true or false.")
    wanted = text == "true"
    log = request.app[STATE_KEY].events
    return lambda event: log.delivery_succeeded(event["id"]) == wanted


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    """The calling account's events, newest first; `type`, `types[]`, `created`, `delivery_success`."""
    query = request.query
    reject_unknown(query, _PAGING | {"type", "types", "created", "delivery_success"})
    who = caller(request)
    who.require("events")
    log = request.app[STATE_KEY].events
    account = None if who.is_platform else who.account_id
    tests = [
        test
        for test in (
            _on_field("created", range_filter(query, "created")),
            _event_types(query),
            _delivery_filter(query, request),
        )
        if test is not None
    ]

    def find(object_id: str, param: str) -> dict[str, Any]:
        found = log.events.get(object_id)
        if found is None or found.get("account") != account:
            raise resource_missing("event", object_id, param=param, status=400)
        return found

    page = list_page(
        log.of_account(account),
        page_request(query),
        url="/v1/events",
        keep=(lambda obj: all(test(obj) for test in tests)) if tests else None,
        find=find,
    )
    page["data"] = [log.served(event) for event in page["data"]]
    return _list_response(request, page)


@routes.get("/v1/events/{id}")
async def retrieve_event(request: web.Request) -> web.Response:
    """One event of the calling account."""
    reject_unknown(request.query, _RETRIEVE_PARAMETERS)
    who = caller(request)
    who.require("events")
    log = request.app[STATE_KEY].events
    event_id = request.match_info["id"]
    found = log.events.get(event_id)
    if found is None or found.get("account") != (None if who.is_platform else who.account_id):
        raise resource_missing("event", event_id)
    return web.json_response(log.served(found))
