"""Normalization rules (SPEC section 2), with properties checked by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otcommon import normalize

type_names = st.text(alphabet=st.characters(blacklist_characters=",()[]{}"), min_size=1, max_size=12)


@given(st.lists(type_names, min_size=1, max_size=6))
def test_joined_ticket_types_split_back_into_their_normalized_parts(types):
    joined = ", ".join(types)
    expected = list(dict.fromkeys(t for t in (normalize.normalize_text(t) for t in types) if t))
    assert normalize.split_ticket_types(joined) == expected


@given(st.text(max_size=60))
def test_split_ticket_types_is_idempotent_and_clean(value):
    parts = normalize.split_ticket_types(value)
    assert all(part and part == normalize.normalize_text(part) for part in parts)
    assert len(parts) == len(set(parts))
    assert normalize.split_ticket_types(", ".join(parts)) == parts


def test_commas_inside_brackets_stay_in_one_type():
    assert normalize.split_ticket_types(" VIP (Meet, Greet) ,General,, general ") == [
        "vip (meet, greet)",
        "general",
    ]


@pytest.mark.parametrize(
    ("value", "bucket"),
    [
        ("online", "online"),
        (" Online ", "online"),
        ("boxOffice", "boxoffice"),
        ("Box Office", "boxoffice"),
        ("box_office", "boxoffice"),
        ("BOX-OFFICE", "boxoffice"),
        ("partner", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_source_buckets(value, bucket):
    assert normalize.source_bucket(value) == bucket


@given(st.text(max_size=30))
def test_source_bucket_is_always_one_of_three(value):
    assert normalize.source_bucket(value) in {"online", "boxoffice", "other"}


@given(st.text(max_size=40))
def test_phone_digits_keep_only_digits(value):
    digits = normalize.phone_digits(value)
    assert digits is None or (digits.isdigit() and len(digits) >= 5)


def test_phone_formats_of_one_number_normalize_alike():
    assert {normalize.phone_digits(p) for p in ("+1 (555) 010-2030", "1.555.010.2030", "15550102030")} == {
        "15550102030"
    }


@given(st.emails())
def test_emails_normalize_case_insensitively(email):
    assert normalize.normalize_email(email.upper()) == normalize.normalize_email(email) == email.casefold()


def test_names_fold_accents_case_and_spacing():
    assert (
        normalize.normalize_name("  José   ÁLVAREZ ")
        == normalize.normalize_name("jose alvarez")
        == "jose alvarez"
    )


def test_customer_key_prefers_email_then_phone_then_name():
    assert normalize.customer_key(email="A@X.io", phone="555 0102", name="Ann") == "email:a@x.io"
    assert normalize.customer_key(email="", phone="555-0102", name="Ann") == "phone:5550102"
    assert normalize.customer_key(email="n/a", phone="12", name=" Ann ") == "name:ann"
    assert normalize.customer_key(email=None, phone=None, name=None) is None


def test_referral_codes_match_trimmed_and_lowercased():
    assert normalize.normalize_referral_code("  SUMMER10 ") == "summer10"
    assert normalize.normalize_referral_code("   ") is None


@given(st.text(max_size=30), st.text(max_size=30))
def test_search_key_never_matches_across_two_fields(left, right):
    key = normalize.search_key(left, right)
    assert key.count("\n") <= 1 + left.count("\n") + right.count("\n")


def test_slug_and_stable_id():
    assert normalize.slugify("Summer Tour: Zürich 2026!") == "summer-tour-zurich-2026"
    assert normalize.stable_id("a", "b") == normalize.stable_id("a", "b")
    assert normalize.stable_id("a", "b") != normalize.stable_id("ab", "")
