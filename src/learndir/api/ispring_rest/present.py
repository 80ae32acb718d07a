"""Domain objects shaped as the OpenAPI document's schemas."""

from __future__ import annotations

from typing import Any

from learndir.core.departments import Department
from learndir.core.groups import Group
from learndir.core.profile_fields import ProfileField
from learndir.core.roles import Role, RoleKind, role_description
from learndir.core.users.queries import UserView

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

INHERIT = {"subordinationType": "inherit"}


def department(d: Department) -> dict[str, Any]:
    out: dict[str, Any] = {"departmentId": d.id, "name": d.name}
    if d.parent_id:
        out["parentDepartmentId"] = d.parent_id
    if d.code:
        out["code"] = d.code
    out["subordination"] = dict(INHERIT)
    out["coSubordination"] = dict(INHERIT)
    return out


def group(g: Group) -> dict[str, Any]:
    return {"groupId": g.id, "name": g.name, "isSmart": False}


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
        "values": {},
    }


def user(u: UserView) -> dict[str, Any]:
    main_role, main_departments = u.primary_role
    added = u.added_at.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    return {
        "userId": u.id,
        "role": ROLE_TYPE[main_role.kind],
        "roleId": main_role.id,
        "departmentId": u.department_id,
        "status": u.status,
        "fields": {name.upper(): value for name, value in u.fields.items()},
        "addedDate": added,
        "lastLoginDate": "",
        "manageableDepartmentIds": main_departments,
        "userRoles": [
            {"roleId": r.id, "manageableDepartmentIds": depts, "roleType": ROLE_TYPE[r.kind]}
            for r, depts in u.roles
        ],
        "groups": u.groups,
        "subordination": dict(INHERIT),
        "coSubordination": dict(INHERIT),
    }


ITEM_NAMES = {
    "manageableDepartmentIds": "id",
    "groups": "id",
    "userIds": "id",
    "userRoles": "userRole",
    "departments": "department",
}
