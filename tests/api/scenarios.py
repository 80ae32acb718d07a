"""What the scenario tables share: the expected error of a row, and how an error outcome is
checked on every transport (SOAP Faults carry the same HTTP statuses as REST)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from learndir.core.errors import MESSAGES, ErrorCode
from tests.transports import Outcome

E = ErrorCode
HTTP_STATUS = {
    E.INVALID_PARAMETERS: 400,
    E.UNAUTHENTICATED: 401,
    E.PERMISSION_DENIED: 403,
    E.SEAT_LIMIT_EXCEEDED: 403,
    E.NOT_FOUND: 404,
    E.LOGIN_TAKEN: 409,
    E.EMAIL_TAKEN: 409,
    E.FIELD_VALUE_TAKEN: 409,
}


@dataclass(frozen=True)
class Err:
    code: ErrorCode
    parameter: str | None = None
    message: str | None = None


def assert_error(outcome: Outcome, expected: Err, transport: Any) -> None:
    """The domain code, the exact message, the HTTP status, and the parameter with a reason."""
    assert outcome.user_id is None
    assert outcome.code == expected.code.value, outcome
    assert outcome.message == (expected.message or MESSAGES[expected.code]), outcome
    assert outcome.status == HTTP_STATUS[expected.code], (transport.name, outcome)
    if expected.parameter is not None:
        assert outcome.parameter == expected.parameter, outcome
        assert outcome.reason, outcome
    if expected.code is E.INVALID_PARAMETERS:
        assert outcome.parameter and outcome.reason, "Wrong parameters must say which and why"
