"""Domain objects shaped as the OpenAPI document's schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from learndir.core.departments import Department
from learndir.core.groups import DetailedGroup, Group
from learndir.core.invitations.service import Invitation
from learndir.core.profile_fields import ProfileField
from learndir.core.roles import Role, RoleKind, role_description
from learndir.core.smart_groups import SmartGroup, rules_to_data
from learndir.core.users.changes import INACTIVE, TERMINATED
from learndir.core.users.queries import Subordination, UserView, field_list

# The OpenAPI's UserRoleEnum has five values; the other standard roles travel as "custom",
# told apart by their roleId (as the older generation does for Publisher).
ROLE_TYPE: dict[RoleKind, str] = {
    RoleKind.OWNER: "administrator",
    RoleKind.ACCOUNT_ADMINISTRATOR: "administrator",
    RoleKind.DEPARTMENT_ADMINISTRATOR: "department_administrator",
    RoleKind.PUBLISHER: "publisher",
    RoleKind.LEARNER: "learner",
    RoleKind.COURSE_AUTHOR: "custom",
    RoleKind.SUPERVISOR: "custom",
    RoleKind.CUSTOM: "custom",
}

# Role.type in GET /role: the role's own kind, so every standard role can be told apart.
ROLE_KIND_NAME: dict[RoleKind, str] = {
    RoleKind.OWNER: "account_owner",
    RoleKind.ACCOUNT_ADMINISTRATOR: "administrator",
    RoleKind.DEPARTMENT_ADMINISTRATOR: "department_administrator",
    RoleKind.COURSE_AUTHOR: "course_author",
    RoleKind.PUBLISHER: "publisher",
    RoleKind.SUPERVISOR: "supervisor",
    RoleKind.LEARNER: "learner",
    RoleKind.CUSTOM: "custom",
}


def department(d: Department) -> dict[str, Any]:
    out: dict[str, Any] = {"departmentId": d.id, "name": d.name}
    if d.parent_id:
        out["parentDepartmentId"] = d.parent_id
    if d.code:
        out["code"] = d.code
    # Stored NULL types mean "inherit".
    out["subordination"] = _subordination(
        Subordination(d.subordination_type or "inherit", d.supervisor_id)
    )
    out["coSubordination"] = _subordination(
        Subordination(d.co_subordination_type or "inherit", d.co_supervisor_id)
    )
    return out


def group(g: Group) -> dict[str, Any]:
    return {"groupId": g.id, "name": g.name, "isSmart": g.is_smart}


def detailed_group(g: DetailedGroup) -> dict[str, Any]:
    return {
        "usersCount": len(g.user_ids),
        "groupId": g.id,
        "userIds": g.user_ids,
        "name": g.name,
        "isSmart": g.is_smart,
    }


def smart_group_rules(g: SmartGroup) -> dict[str, Any]:
    return {"smartGroupRules": {"groupId": g.id, "rules": rules_to_data(g.rules)}}


def role(r: Role) -> dict[str, Any]:
    return {
        "roleId": r.id,
        "type": ROLE_KIND_NAME[r.kind],
        "title": r.name,
        "description": role_description(r),
    }


def profile_field(f: ProfileField) -> dict[str, Any]:
    return {
        "userFieldInfoId": f.key,
        "name": f.name,
        "label": f.label,
        "type": f.type,
        "isUnique": int(f.is_unique),
        "isRequired": int(f.is_required),
        "orderPriority": f.order_priority,
        # A field's list of allowed values: no field type here has one.
        "values": [],
    }


def _datetime(value: datetime | None) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC; stored values without a zone are UTC already."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat() + "Z"


_INHERITED = {"subordinationType": "inherit"}


def _subordination(s: Subordination) -> dict[str, Any]:
    if s.type == "inherit":
        return _INHERITED  # shared: answers are serialised, never changed
    out: dict[str, Any] = {"subordinationType": s.type}
    if s.supervisor_id:
        out["supervisorId"] = s.supervisor_id
    return out


def user_fields(values: dict[str, str]) -> list[dict[str, str]]:
    return field_list(values)


def user(u: UserView, *, v2: bool = False) -> dict[str, Any]:
    """User (v1: status 5 reads as 3, as the older endpoints report it) or UserV2."""
    main_role, main_departments = u.primary_role
    out: dict[str, Any] = {
        "userId": u.id,
        "role": ROLE_TYPE[main_role.kind],
        "roleId": main_role.id,
        "departmentId": u.department_id,
        "status": u.status if v2 or u.status != TERMINATED else INACTIVE,
        "fields": user_fields(u.fields),
        "addedDate": _datetime(u.added_at),
        "lastLoginDate": _datetime(u.last_login_at),
        "manageableDepartmentIds": main_departments,
        "userRoles": [
            {"roleId": r.id, "manageableDepartmentIds": depts, "roleType": ROLE_TYPE[r.kind]}
            for r, depts in u.roles
        ],
        "groups": u.groups,
        "subordination": _subordination(u.subordination),
        "coSubordination": _subordination(u.co_subordination),
    }
    leave = u.work_leave
    if leave is not None and leave.start is not None:
        status: dict[str, Any] = {
            "workLeaveReason": leave.reason,
            "startDate": leave.start.isoformat(),
        }
        if leave.end is not None:
            status["endDate"] = leave.end.isoformat()
        out["workLeaveStatus"] = status
    return out


def invitation(i: Invitation) -> dict[str, Any]:
    """An invitation message; times it does not have yet are left out."""
    out: dict[str, Any] = {
        "invitationId": i.id,
        "channel": i.channel,
        "recipient": i.recipient,
        "status": i.status.value,
        "attempts": i.attempts,
    }
    for key, moment in (
        ("createdDate", i.created_at),
        ("sentDate", i.sent_at),
        ("expiryDate", i.expires_at),
        ("acceptedDate", i.accepted_at),
        ("revokedDate", i.revoked_at),
    ):
        if moment is not None:
            out[key] = _datetime(moment)
    if i.last_error:
        out["lastError"] = i.last_error
    return out


ITEM_NAMES = {
    "fields": "field",
    "values": "value",
    "manageableDepartmentIds": "id",
    "groups": "id",
    "userIds": "id",
    "userRoles": "userRole",
    "departments": "department",
}
