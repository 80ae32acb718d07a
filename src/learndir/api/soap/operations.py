"""The SOAP operations: each authenticates the caller, turns its validated request element into
core parameters, calls one core function and builds its result element. Adding an operation is
one row in OPERATIONS (and its types in learndir.wsdl)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from learndir.api.ispring_rest import present
from learndir.api.soap.envelope import service_tag
from learndir.api.soap.requests import (
    PROFILE_PARAMETERS,
    authenticate,
    list_parameter,
    parameter,
    required,
    user_parameters,
)
from learndir.api.soap.results import result
from learndir.core import departments, groups, profile_fields
from learndir.core.errors import DomainError
from learndir.core.users import changes, queries
from learndir.core.users import service as users
from learndir.core.users.commands import AddUser, ApiGeneration, UpdateUser, parse_command
from learndir.core.users.queries import UserFilter, UserView
from learndir.db.engine import Database


@dataclass(frozen=True)
class Operation:
    """One row of the operation table, keyed by the request element's name."""

    run: Callable[[Database, etree._Element], etree._Element]
    # Whether it changes anything: the request is then one transaction, authentication included.
    writes: bool = False
    # Undeclared leaf parameters are profile field values (addUser's seed allows them).
    unknown_leaves_are_fields: bool = False
    # List parameters that an empty element sets to the empty list (elsewhere an empty
    # element is an absent parameter).
    empty_lists: frozenset[str] = frozenset()


# ---- users: reading ------------------------------------------------------------------------


def user_profile(view: UserView, generation: ApiGeneration) -> dict[str, Any]:
    """The REST API's User. The older generation knows statuses 1 and 3 only and reads 5 as 3,
    as REST v1 does."""
    return present.user(view, v2=generation is ApiGeneration.TOKEN)


def _filter(request: etree._Element) -> UserFilter:
    return UserFilter(
        departments=list_parameter(request, "departments"),
        groups=list_parameter(request, "groups"),
        logins=list_parameter(request, "logins"),
        emails=list_parameter(request, "emails"),
        user_ids=list_parameter(request, "userIds"),
    )


def _page_size(request: etree._Element) -> int | None:
    value = parameter(request, "pageSize")
    return None if value is None else int(value)  # an xs:int, checked by the schema


def get_user_profile(db: Database, request: etree._Element) -> etree._Element:
    actor, generation = authenticate(db, request)
    view = queries.get_user(db, actor, required(request, "userId"))
    return result("GetUserProfileResult", {"userProfile": user_profile(view, generation)})


def get_users(db: Database, request: etree._Element) -> etree._Element:
    actor, generation = authenticate(db, request)
    views = queries.list_users(db, actor, _filter(request))
    return result("GetUsersResult", {"userProfile": [user_profile(v, generation) for v in views]})


def list_users(db: Database, request: etree._Element) -> etree._Element:
    actor, generation = authenticate(db, request)
    page = queries.page_users(
        db, actor, _filter(request), _page_size(request), parameter(request, "pageToken")
    )
    return result(
        "ListUsersResult",
        {
            "userProfile": [user_profile(v, generation) for v in page.users],
            "nextPageToken": page.next_page_token,
        },
    )


def find_existing_users(db: Database, request: etree._Element) -> etree._Element:
    actor, _ = authenticate(db, request)
    present_ids = request.find(service_tag("userIds")) is not None
    found = queries.find_existing(
        db, actor, list_parameter(request, "userIds") if present_ids else None
    )
    return result("FindExistingUsersResult", {"userId": found})


# ---- users: changing -----------------------------------------------------------------------


def add_user_command(request: etree._Element) -> AddUser:
    """addUser's parameters from a validated AddUserRequest, credentials left out."""
    return parse_command(AddUser, user_parameters(request, profile=PROFILE_PARAMETERS))


def add_user(db: Database, request: etree._Element) -> etree._Element:
    actor, generation = authenticate(db, request, [parameter(request, "departmentId")])
    user_id = users.add_user(db, actor, add_user_command(request), generation)
    return result("AddUserResult", {"userId": user_id})


# The core blames parameters by their REST names; these are called otherwise here.
_SOAP_NAMES = {"groupIds": "groups"}


def update_user_profile(db: Database, request: etree._Element) -> etree._Element:
    actor, generation = authenticate(db, request)
    user_id = required(request, "userId")
    data = user_parameters(request, profile=PROFILE_PARAMETERS, skip=frozenset({"userId"}))
    try:
        changes.update_user(db, actor, user_id, parse_command(UpdateUser, data), generation)
    except DomainError as exc:
        exc.parameter = _SOAP_NAMES.get(exc.parameter or "", exc.parameter)
        raise
    return result("UpdateUserProfileResult")


def delete_user(db: Database, request: etree._Element) -> etree._Element:
    actor, _ = authenticate(db, request)
    changes.delete_user(db, actor, required(request, "userId"))
    return result("DeleteUserResult")


def change_user_status(db: Database, request: etree._Element) -> etree._Element:
    actor, generation = authenticate(db, request)
    user_id = required(request, "userId")
    status = parameter(request, "status")
    changes.change_status(db, actor, [user_id], status, generation, parameter="userId")
    return result("ChangeUserStatusResult")


# ---- the directory around users ------------------------------------------------------------


def get_user_profile_fields(db: Database, request: etree._Element) -> etree._Element:
    actor, _ = authenticate(db, request)
    fields = [
        {
            **present.profile_field(f),
            "isUnique": f.is_unique,
            "isRequired": f.is_required,
        }
        for f in profile_fields.list_fields(db, actor)
    ]
    return result("GetUserProfileFieldsResult", {"profileField": fields})


def get_groups(db: Database, request: etree._Element) -> etree._Element:
    actor, _ = authenticate(db, request)
    found = groups.list_groups(db, actor)
    return result("GetGroupsResult", {"group": [present.group(g) for g in found]})


def get_departments(db: Database, request: etree._Element) -> etree._Element:
    actor, _ = authenticate(db, request)
    found = departments.list_departments(db, actor, parameter(request, "code"))
    return result("GetDepartmentsResult", {"department": [present.department(d) for d in found]})


OPERATIONS: dict[str, Operation] = {
    "AddUserRequest": Operation(add_user, writes=True, unknown_leaves_are_fields=True),
    "GetUserProfileRequest": Operation(get_user_profile),
    "GetUsersRequest": Operation(get_users),
    "ListUsersRequest": Operation(list_users),
    "FindExistingUsersRequest": Operation(find_existing_users),
    "UpdateUserProfileRequest": Operation(
        update_user_profile,
        writes=True,
        unknown_leaves_are_fields=True,
        empty_lists=frozenset({"groups", "manageableDepartmentIds"}),
    ),
    "DeleteUserRequest": Operation(delete_user, writes=True),
    "ChangeUserStatusRequest": Operation(change_user_status, writes=True),
    "GetUserProfileFieldsRequest": Operation(get_user_profile_fields),
    "GetGroupsRequest": Operation(get_groups),
    "GetDepartmentsRequest": Operation(get_departments),
}
