"""Domain errors with stable codes; each interface maps them to its own format in one table."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_PARAMETERS = "invalid_parameters"
    LOGIN_TAKEN = "login_taken"
    EMAIL_TAKEN = "email_taken"
    FIELD_VALUE_TAKEN = "field_value_taken"
    SEAT_LIMIT_EXCEEDED = "seat_limit_exceeded"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    NOT_FOUND = "not_found"
    ACCOUNT_EXISTS = "account_exists"
    DEPARTMENT_NOT_EMPTY = "department_not_empty"
    # A set-password link that can no longer be used.
    INVITATION_USED = "invitation_used"
    INVITATION_EXPIRED = "invitation_expired"
    INVITATION_REVOKED = "invitation_revoked"
    # Signing in is locked for a while after too many failures (see core.signin).
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    # SCIM documents (see core.scim): a filter, a PATCH path, or a value the schema refuses.
    INVALID_FILTER = "invalid_filter"
    INVALID_PATH = "invalid_path"
    NO_TARGET = "no_target"
    # An attribute the client may not change; SCIM reports it as scimType mutability.
    READ_ONLY = "read_only"
    INVALID_VALUE = "invalid_value"
    # A change made against a version of the resource that is no longer current (If-Match).
    VERSION_MISMATCH = "version_mismatch"


# The seed documents' own strings, byte for byte, where they define one.
MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_PARAMETERS: "Wrong parameters",
    ErrorCode.LOGIN_TAKEN: "User with the same login is already registered.",
    ErrorCode.EMAIL_TAKEN: "User with the same email is already registered.",
    ErrorCode.FIELD_VALUE_TAKEN: "User with the same {parameter} is already registered.",
    ErrorCode.SEAT_LIMIT_EXCEEDED: "Number of user accounts is exceeded",
    ErrorCode.PERMISSION_DENIED: "Permission Denied",
    ErrorCode.UNAUTHENTICATED: "Unauthorized",
    ErrorCode.NOT_FOUND: "Not found",
    ErrorCode.ACCOUNT_EXISTS: "An account with this URL already exists",
    ErrorCode.DEPARTMENT_NOT_EMPTY: "Department is not empty",
    ErrorCode.INVITATION_USED: "This link has already been used",
    ErrorCode.INVITATION_EXPIRED: "This link has expired",
    ErrorCode.INVITATION_REVOKED: "This link is no longer valid",
    ErrorCode.TOO_MANY_ATTEMPTS: "Too many attempts",
    ErrorCode.INVALID_FILTER: "Invalid filter",
    ErrorCode.INVALID_PATH: "Invalid path",
    ErrorCode.NO_TARGET: "No attribute matches the path",
    ErrorCode.READ_ONLY: "Attribute is read-only",
    ErrorCode.INVALID_VALUE: "Invalid value",
    ErrorCode.VERSION_MISMATCH: "The resource has changed since it was read",
}


class DomainError(Exception):
    """A rule said no. `parameter` and `reason` say which input and why, when one is to blame;
    `retry_after`, in seconds, when asking again later can succeed."""

    def __init__(
        self,
        code: ErrorCode,
        reason: str | None = None,
        *,
        parameter: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.code = code
        self.retry_after = retry_after
        self.parameter = parameter
        self.reason = reason
        self.message = message or MESSAGES[code].format(parameter=parameter or "value")
        super().__init__(self.describe())

    def describe(self) -> str:
        """The message, then the parameter and reason: what a person reads."""
        detail = ": ".join(part for part in (self.parameter, self.reason) if part)
        return f"{self.message} ({detail})" if detail else self.message


def invalid(parameter: str, reason: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_PARAMETERS, reason, parameter=parameter)


def denied(reason: str, parameter: str | None = None) -> DomainError:
    return DomainError(ErrorCode.PERMISSION_DENIED, reason, parameter=parameter)


def not_found(what: str, parameter: str | None = None) -> DomainError:
    return DomainError(
        ErrorCode.NOT_FOUND, f"unknown {what}", parameter=parameter, message=f"Unknown {what}"
    )
