"""The everyday e-mail fast path gives exactly what email-validator gives."""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from learndir.core.errors import DomainError
from learndir.core.profile_fields import _plain_email, normalize_email

_LOCAL = st.text(string.ascii_letters + string.digits + "._%+-", min_size=1, max_size=70)
_LABEL = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=65)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_TLD = st.one_of(
    st.sampled_from(["com", "ORG", "test", "local", "invalid", "onion", "arpa", "c1", "x"]),
    st.text(string.ascii_letters, min_size=1, max_size=6),
)


def _slow(value: str) -> str | None:
    try:
        return validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        ).normalized
    except EmailNotValidError:
        return None


@settings(max_examples=3000, deadline=None)
@given(_LOCAL, _DOMAIN, _TLD)
def test_the_fast_path_agrees_with_email_validator(local: str, domain: str, tld: str) -> None:
    value = f"{local}@{domain}.{tld}"
    fast = _plain_email(value)
    if fast is not None:
        assert fast == _slow(value), value
    expected = _slow(value)
    if expected is None:
        with pytest.raises(DomainError):
            normalize_email(value)
    else:
        assert normalize_email(value) == expected


@pytest.mark.parametrize(
    "value",
    ["Bob.Smith@Example.COM", "a_b%c+d@EXAMPLE.org", "jane.doe@acme.test", "x@sub.b-c.example"],
)
def test_everyday_addresses_take_the_fast_path(value: str) -> None:
    assert _plain_email(value) == _slow(value)


@pytest.mark.parametrize(
    "value", ["a..b@x.com", ".a@x.com", "a@x.local", "a@xn--p1ai.com", "a@-x.com", "ä@x.com"]
)
def test_the_rest_takes_the_full_validation(value: str) -> None:
    assert _plain_email(value) is None
