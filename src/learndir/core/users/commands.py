"""Typed commands for user operations: what every interface parses its wire format into."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from learndir.core.errors import DomainError, invalid


class ApiGeneration(StrEnum):
    """The two generations of addUser differ in defaults (seeds 002 and 000); REST follows the
    newer one except where the OpenAPI document is more lenient."""

    CREDENTIALS = "credentials"  # accountUrl/email/password: sendLoginEmail defaults to true
    TOKEN = "token"  # SOAP with a token: sendLoginEmail defaults to false, then needs a message
    # REST: as TOKEN, but sendLoginEmail alone is accepted (NewUser does not require
    # invitationMessage): the account's default invitation text is sent.
    REST = "rest"


class RoleItem(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    role_id: str = Field(alias="roleId")
    manageable_department_ids: list[str] | None = Field(None, alias="manageableDepartmentIds")
    role_type: str | None = Field(None, alias="roleType")


class AddUser(BaseModel):
    """addUser's parameters, under the names of the seeds and of the OpenAPI document."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    login: str | None = None
    email: str | None = None
    password: SecretStr | None = None
    department_id: str | None = Field(None, alias="departmentId")
    send_login_email: bool | None = Field(None, alias="sendLoginEmail")
    invitation_message: str | None = Field(None, alias="invitationMessage")
    send_login_sms: bool | None = Field(None, alias="sendLoginSMS")
    invitation_sms_message: str | None = Field(None, alias="invitationSMSMessage")
    role: str | None = None
    role_id: str | None = Field(None, alias="roleId")
    manageable_department_ids: list[str] | None = Field(None, alias="manageableDepartmentIds")
    groups: list[str] | None = Field(None, validation_alias=AliasChoices("groups", "groupIds"))
    roles: list[RoleItem] | None = None
    fields: dict[str, str | None] = Field(default_factory=dict)


class UpdateUser(BaseModel):
    """POST /user/{userId} (the OpenAPI's UpdateUser) and SOAP UpdateUserProfile: only what is
    given changes. `groups` given is the user's whole new set of ordinary groups."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    login: str | None = None
    email: str | None = None
    department_id: str | None = Field(None, alias="departmentId")
    role: str | None = None
    role_id: str | None = Field(None, alias="roleId")
    roles: list[RoleItem] | None = None
    manageable_department_ids: list[str] | None = Field(None, alias="manageableDepartmentIds")
    groups: list[str] | None = Field(None, validation_alias=AliasChoices("groupIds", "groups"))
    fields: dict[str, str | None] = Field(default_factory=dict)


class Subordination(BaseModel):
    """Who supervises: `manual` names the supervisor, `inherit` follows the department,
    `no_supervisor` stops inheritance."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    subordination_type: str = Field(alias="subordinationType")
    supervisor_id: str | None = Field(None, alias="supervisorId")


class ChangeSubordination(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    subordination: Subordination | None = None
    co_subordination: Subordination | None = Field(None, alias="coSubordination")


class WorkLeaveItem(BaseModel):
    """One entry of UpdateWorkLeaveStatusesRequest."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_id: str = Field(alias="userId")
    work_leave_reason: str = Field(alias="workLeaveReason")
    start_date: str | None = Field(None, alias="startDate")
    end_date: str | None = Field(None, alias="endDate")


class UpdateWorkLeaves(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    work_leave_statuses: list[WorkLeaveItem] = Field(alias="workLeaveStatuses")


_PUBLIC_NAMES = {name: (field.alias or name) for name, field in AddUser.model_fields.items()}
_PUBLIC_NAMES["work_leave_statuses"] = "workLeaveStatuses"
_PUBLIC_NAMES["co_subordination"] = "coSubordination"
_PUBLIC_NAMES["groups"] = "groups"

M = TypeVar("M", bound=BaseModel)


def _describe(error: ErrorDetails) -> tuple[str, str]:
    loc = [str(part) for part in error.get("loc", ())]
    kind = error.get("type", "")
    parameter = (
        ".".join(_PUBLIC_NAMES.get(loc[0], loc[0]) if i == 0 else p for i, p in enumerate(loc))
        or "request"
    )
    if kind == "extra_forbidden":
        return parameter, "unknown parameter"
    if kind == "missing":
        return parameter, "is required"
    if kind.startswith("bool"):
        return parameter, "must be true or false"
    if kind in ("list_type", "dict_type", "model_type"):
        expected = {
            "list_type": "a list",
            "dict_type": "a set of name/value pairs",
            "model_type": "an object",
        }[kind]
        return parameter, f"must be {expected}"
    if kind == "string_type":
        return parameter, "must be a text value"
    return parameter, str(error.get("msg", "is not valid"))


def parse_command(model: type[M], data: dict[str, Any]) -> M:
    """Builds a command from decoded wire data; a type error becomes Wrong parameters naming
    the first offending parameter."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        parameter, reason = _describe(exc.errors()[0])
        raise invalid(parameter, reason) from None


__all__ = [
    "AddUser",
    "ApiGeneration",
    "ChangeSubordination",
    "DomainError",
    "RoleItem",
    "Subordination",
    "UpdateUser",
    "UpdateWorkLeaves",
    "WorkLeaveItem",
    "parse_command",
]
