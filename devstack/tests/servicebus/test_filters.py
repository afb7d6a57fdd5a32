"""Unit tests: the correlation and SQL filter evaluator and SQL actions (no server)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.servicebus.filters import (
    FilterSyntaxError,
    MessageView,
    apply_action,
    compile_sql_action,
    compile_sql_filter,
    correlation_filter,
)

MESSAGE = MessageView(
    system={"messageid": "m-1", "correlationid": "order-7", "label": "payment.captured", "to": "ledger",
            "contenttype": "application/json", "sessionid": "s-1", "replyto": "replies",
            "replytosessionid": "rs-1"},
    user={"amount": 250, "currency": "EUR", "vip": True, "ratio": 0.5, "note": "50% off_now", "empty": ""},
)  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amount > 100", True),
        ("amount >= 250 AND amount <= 250", True),
        ("amount < 100", False),
        ("amount <> 250", False),
        ("amount != 251", True),
        ("currency = 'EUR'", True),
        ("currency IN ('USD', 'EUR')", True),
        ("currency NOT IN ('USD', 'EUR')", False),
        ("sys.Label LIKE 'payment.%'", True),
        ("sys.Subject LIKE 'payment._aptured'", True),
        ("sys.label like 'PAYMENT%'", False),
        ("note LIKE '50!% off!_now' ESCAPE '!'", True),
        ("note NOT LIKE '%off%'", False),
        ("missing IS NULL", True),
        ("amount IS NOT NULL", True),
        ("EXISTS(amount) AND NOT EXISTS(missing)", True),
        ("missing = 1", False),
        ("NOT missing = 1", False),  # unknown stays unknown under NOT
        ("missing = 1 OR amount = 250", True),
        ("vip = TRUE", True),
        ("ratio * 2 = 1", True),
        ("amount / 100 = 2", True),  # integer division, as in SQL
        ("amount % 100 = 50", True),
        ("-amount < 0", True),
        ("(amount > 1000 OR currency = 'EUR') AND vip = true", True),
        ("sys.CorrelationId = 'order-7' AND sys.MessageId = 'm-1' AND sys.To = 'ledger'", True),
        ("sys.ContentType = 'application/json' AND sys.ReplyTo = 'replies'", True),
        ("sys.SessionId = 's-1' AND sys.ReplyToSessionId = 'rs-1'", True),
        ("user.amount = 250", True),
        ("[currency] = 'EUR'", True),
        ("currency = 250", False),  # type mismatch is unknown, not an error
        ("amount = 250.0", True),
        ("empty = ''", True),
        ("1 = 1", True),
        ("'it''s' = 'it''s'", True),
    ],
)
def test_sql_filter(expression, expected):
    assert compile_sql_filter(expression)(MESSAGE) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "amount >",
        "amount = = 1",
        "(amount = 1",
        "amount IN 1",
        "sys.Nonsense = 1",
        "amount ~ 1",
        "x LIKE y",
        "",
    ],
)
def test_sql_syntax_errors_are_reported(expression):
    with pytest.raises(FilterSyntaxError):
        compile_sql_filter(expression)


def test_correlation_filter_matches_system_and_user_properties():
    assert correlation_filter({"correlation_id": "order-7", "properties": {"currency": "EUR"}})(MESSAGE)
    assert correlation_filter({"label": "payment.captured", "to": "ledger", "session_id": "s-1"})(MESSAGE)
    assert correlation_filter({"content_type": "application/json", "reply_to": "replies"})(MESSAGE)
    assert correlation_filter({"message_id": "m-1", "reply_to_session_id": "rs-1"})(MESSAGE)
    assert correlation_filter({"properties": {"amount": 250, "vip": True}})(MESSAGE)
    assert not correlation_filter({"correlation_id": "order-8"})(MESSAGE)
    assert not correlation_filter({"properties": {"amount": "250"}})(MESSAGE)
    assert not correlation_filter({"properties": {"missing": "x"}})(MESSAGE)
    assert not correlation_filter({"properties": {"vip": 1}})(MESSAGE)


def test_sql_action_sets_and_removes_properties():
    action = compile_sql_action(
        "SET tier = 'gold'; SET amount = amount * 2; REMOVE ratio; SET sys.Label = 'x'"
    )
    changed = apply_action(action, MESSAGE)
    assert changed.user["tier"] == "gold"
    assert changed.user["amount"] == 500
    assert "ratio" not in changed.user
    assert changed.system["label"] == "x"
    assert MESSAGE.user["amount"] == 250  # the original is left alone


@pytest.mark.parametrize("action", ["", "SET", "SET a", "SET a = ", "DELETE a", "SET a = 1 SET b = 2"])
def test_bad_actions_are_reported(action):
    with pytest.raises(FilterSyntaxError) as caught:
        compile_sql_action(action)
    assert caught.value.in_action


_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="%_'"), max_size=20
)


@given(value=_texts, other=_texts)
def test_like_without_wildcards_is_equality(value, other):
    view = MessageView(system={}, user={"v": value})
    quoted = other.replace("'", "''")
    assert compile_sql_filter(f"v LIKE '{quoted}'")(view) is (value == other)


@given(amount=st.integers(min_value=-(10**9), max_value=10**9), bound=st.integers(-(10**9), 10**9))
def test_not_negates_known_comparisons(amount, bound):
    view = MessageView(system={}, user={"amount": amount})
    assert compile_sql_filter(f"amount > {bound}")(view) is (amount > bound)
    assert compile_sql_filter(f"NOT amount > {bound}")(view) is (amount <= bound)
