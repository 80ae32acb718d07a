"""Settings, for the owner and account administrators only: profile fields, custom roles, the
password policy and the default invitation text, API keys and SCIM tokens, webhook subscribers
with their delivery status, and the audit trail.

Every change is a core call with the signed-in user as the actor (the same functions the REST
API and the command line use); the core checks, records and answers. A key's secret and a SCIM
token are rendered once, in the answer to the POST that made them, and never again.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.datastructures import FormData

from learndir.api.console.web import (
    Console,
    account_administrator,
    error_text,
    field_errors,
    posted,
    status_of,
    text,
    texts,
)
from learndir.core import account_admin, api_keys, scim_tokens, webhooks
from learndir.core.audit import AuditQuery, AuditRecord, acting_user_id, read_audit
from learndir.core.changes import EventType, Operation
from learndir.core.common import as_utc
from learndir.core.errors import DomainError, invalid
from learndir.core.profile_fields import CUSTOM_TYPES, list_fields
from learndir.core.roles import Permission, Role, RoleKind, list_roles, role_description
from learndir.core.text import check_text
from learndir.core.users.service import MAX_PASSWORD_LENGTH

router = APIRouter()

AUDIT_PAGE = 50

# The settings' own navigation: (key, path, label).
PAGES = (
    ("fields", "/settings", "Profile fields"),
    ("roles", "/settings/roles", "Roles"),
    ("policy", "/settings/policy", "Password and invitation"),
    ("keys", "/settings/keys", "API keys and SCIM tokens"),
    ("webhooks", "/settings/webhooks", "Webhooks"),
    ("audit", "/settings/audit", "Audit trail"),
)
TITLES = {key: label for key, _path, label in PAGES}


def _words(permission: Permission) -> str:
    """A permission as a person reads it: add_users -> "add users"."""
    return permission.value.replace("_", " ")


TYPE_WORDS = {
    "string": "Text",
    "country": "Country (ISO 3166)",
    "phone": "Phone number",
    "birthdate": "Date of birth",
}
OPERATIONS = sorted([e.value for e in EventType] + [o.value for o in Operation])


def _page(
    console: Console,
    key: str,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> Response:
    values = {"pages": PAGES, "page": key, **context}
    return console.render(template, values, status=status, section="settings", title=TITLES[key])


def _printable(values: dict[str, Any]) -> None:
    """The project's text rule (core/text.py: no control characters, no lone surrogates)
    before any query: Wrong parameters naming the form's field."""
    for name, value in values.items():
        if isinstance(value, str):
            check_text(value, name)


# ---- profile fields ---------------------------------------------------------------------------


def _fields_context(console: Console) -> dict[str, Any]:
    return {
        "fields": list_fields(console.db, console.actor),
        "types": [(t, TYPE_WORDS.get(t, t)) for t in sorted(CUSTOM_TYPES)],
        "values": {"type": "string"},
    }


@router.get("/settings", include_in_schema=False)
def fields_page(console: Console = Depends(account_administrator)) -> Response:
    return _page(console, "fields", "settings_fields.html", _fields_context(console))


@router.post("/settings/fields", include_in_schema=False)
def add_field(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    values = {
        "name": text(form, "name"),
        "label": text(form, "label"),
        "type": text(form, "type"),
        "required": bool(form.get("required")),
        "unique": bool(form.get("unique")),
    }
    try:
        field = account_admin.add_profile_field(
            console.db,
            console.actor,
            values["name"],
            values["label"],
            values["type"],
            values["required"],
            values["unique"],
        )
    except DomainError as exc:
        context = _fields_context(console)
        context.update(values=values, errors=field_errors(exc))
        return _page(console, "fields", "settings_fields.html", context, status=status_of(exc))
    return console.redirect("/settings", f"The field {field.label} ({field.name}) was added.")


# ---- roles ------------------------------------------------------------------------------------


def _permission_words(role: Role) -> str:
    if role.kind is RoleKind.CUSTOM:
        if not role.permissions:
            return "no permissions"
        return ", ".join(_words(p) for p in Permission if p in role.permissions)
    return role_description(role)


def _roles_context(console: Console) -> dict[str, Any]:
    roles = list_roles(console.db, console.actor)
    return {
        "roles": [
            {
                "name": r.name,
                "custom": r.kind is RoleKind.CUSTOM,
                "what": _permission_words(r),
                "permissions": [_words(p) for p in Permission if p in r.permissions],
            }
            for r in roles
        ],
        "permissions": [(p.value, _words(p)) for p in Permission],
        "values": {"name": "", "permissions": []},
    }


@router.get("/settings/roles", include_in_schema=False)
def roles_page(console: Console = Depends(account_administrator)) -> Response:
    return _page(console, "roles", "settings_roles.html", _roles_context(console))


@router.post("/settings/roles", include_in_schema=False)
def add_role(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    values = {"name": text(form, "name"), "permissions": texts(form, "permissions")}
    try:
        role = account_admin.add_custom_role(
            console.db, console.actor, values["name"], values["permissions"]
        )
    except DomainError as exc:
        context = _roles_context(console)
        context.update(values=values, errors=field_errors(exc))
        return _page(console, "roles", "settings_roles.html", context, status=status_of(exc))
    return console.redirect("/settings/roles", f"The role {role.name} was created.")


# ---- password policy and invitation text ------------------------------------------------------


def _policy_context(console: Console) -> dict[str, Any]:
    policy = account_admin.account_policy(console.db, console.actor)
    return {
        "values": {
            "min_length": str(policy.password_min_length),
            "invitation_message": policy.invitation_message,
        },
        "max_length": MAX_PASSWORD_LENGTH,
        "max_text": account_admin.MAX_INVITATION_TEXT,
    }


@router.get("/settings/policy", include_in_schema=False)
def policy_page(console: Console = Depends(account_administrator)) -> Response:
    return _page(console, "policy", "settings_policy.html", _policy_context(console))


@router.post("/settings/policy/password", include_in_schema=False)
def set_password_policy(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    given = text(form, "min_length")
    try:
        minimum = account_admin.set_password_policy(console.db, console.actor, given)
    except DomainError as exc:
        context = _policy_context(console)
        context["values"]["min_length"] = given
        context["errors"] = field_errors(exc, {"minLength": "min_length"})
        return _page(console, "policy", "settings_policy.html", context, status=status_of(exc))
    return console.redirect(
        "/settings/policy", f"Passwords must now be at least {minimum} characters long."
    )


@router.post("/settings/policy/invitation", include_in_schema=False)
def set_invitation_text(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    raw = form.get("invitation_message")
    given = raw if isinstance(raw, str) else ""
    try:
        account_admin.set_invitation_message(console.db, console.actor, given)
    except DomainError as exc:
        context = _policy_context(console)
        context["values"]["invitation_message"] = given
        context["errors"] = field_errors(exc, {"invitationMessage": "invitation_message"})
        return _page(console, "policy", "settings_policy.html", context, status=status_of(exc))
    return console.redirect("/settings/policy", "The invitation text was saved.")


# ---- API keys and SCIM tokens -----------------------------------------------------------------


def _keys_context(console: Console) -> dict[str, Any]:
    return {
        "keys": api_keys.list_keys(console.db, console.actor),
        "tokens": scim_tokens.account_scim_tokens(console.db, console.actor),
        "scim_url": _service_url(console) + "/scim/v2",
    }


def _service_url(console: Console) -> str:
    """The service's address as the browser reached it (its prefix included)."""
    return str(console.request.base_url).rstrip("/")


def _keys_page(console: Console, extra: dict[str, Any], status: int = 200) -> Response:
    context = _keys_context(console)
    context.update(extra)
    return _page(console, "keys", "settings_keys.html", context, status=status)


@router.get("/settings/keys", include_in_schema=False)
def keys_page(console: Console = Depends(account_administrator)) -> Response:
    return _keys_page(console, {})


@router.post("/settings/keys", include_in_schema=False)
def create_key(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    user = text(form, "user")
    try:
        _printable({"userId": user})
        user_id = acting_user_id(console.db, console.actor, user, "userId")
        key = api_keys.create_key(console.db, console.actor, user_id)
    except DomainError as exc:
        errors = field_errors(exc, {"userId": "user"})
        return _keys_page(console, {"errors": errors, "key_user": user}, status_of(exc))
    # Shown in this answer only: the page is not cached, the secret is in no URL or cookie.
    return _keys_page(console, {"created_key": key}, 201)


@router.post("/settings/keys/revoke", include_in_schema=False)
def revoke_key(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    client_id = text(form, "client_id")
    try:
        api_keys.revoke_key(console.db, console.actor, client_id)
    except DomainError as exc:
        return _keys_page(console, {"key_error": error_text(exc)}, status_of(exc))
    return console.redirect("/settings/keys", f"The API key {client_id} was revoked.")


@router.post("/settings/scim-tokens", include_in_schema=False)
def create_scim_token(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    invite = bool(form.get("invite"))
    try:
        made = scim_tokens.create_token_for_actor(console.db, console.actor, invite=invite)
    except DomainError as exc:
        return _keys_page(console, {"token_error": error_text(exc)}, status_of(exc))
    return _keys_page(console, {"created_token": made}, 201)


@router.post("/settings/scim-tokens/revoke", include_in_schema=False)
def revoke_scim_token(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    token_id = text(form, "token_id")
    try:
        scim_tokens.revoke_token_of_account(console.db, console.actor, token_id)
    except DomainError as exc:
        return _keys_page(console, {"token_error": error_text(exc)}, status_of(exc))
    return console.redirect("/settings/keys", f"The SCIM token {token_id} was revoked.")


# ---- webhooks ---------------------------------------------------------------------------------


def _webhooks_context(console: Console) -> dict[str, Any]:
    return {
        "subscribers": webhooks.account_subscribers(console.db, console.actor),
        "event_types": [e.value for e in EventType],
        "values": {"name": "", "callback_url": "", "types": []},
    }


def _webhooks_page(console: Console, extra: dict[str, Any], status: int = 200) -> Response:
    context = _webhooks_context(console)
    context.update(extra)
    return _page(console, "webhooks", "settings_webhooks.html", context, status=status)


@router.get("/settings/webhooks", include_in_schema=False)
def webhooks_page(console: Console = Depends(account_administrator)) -> Response:
    return _webhooks_page(console, {})


@router.post("/settings/webhooks", include_in_schema=False)
def register_subscriber(
    console: Console = Depends(account_administrator), form: FormData = Depends(posted)
) -> Response:
    values = {
        "name": text(form, "name"),
        "callback_url": text(form, "callback_url"),
        "types": texts(form, "types"),
    }
    raw_secret = form.get("secret")
    secret = raw_secret if isinstance(raw_secret, str) else ""
    try:
        _printable(
            {"name": values["name"], "callback_url": values["callback_url"], "secret": secret}
        )
        unknown = [t for t in values["types"] if t not in webhooks.SUBSCRIPTION_TYPES]
        if unknown:
            raise invalid("types", f"unknown subscription type {unknown[0]!r}")
        webhooks.register(console.db, console.actor, values["name"], values["callback_url"], secret)
        for kind in values["types"]:
            webhooks.subscribe(
                console.db, console.actor, values["name"], {"subscriptionType": kind}
            )
    except DomainError as exc:
        errors = field_errors(
            exc, {"subscriberName": "name", "callbackUrl": "callback_url", "subscription": "types"}
        )
        return _webhooks_page(console, {"values": values, "errors": errors}, status_of(exc))
    return console.redirect(
        "/settings/webhooks",
        f"The subscriber {values['name']} was registered. Send it a confirmation code, then "
        "confirm it with the code it received.",
    )


_WEBHOOK_ACTIONS = {
    "enable": "enabled",
    "disable": "disabled",
    "remove": "removed",
    "send-code": "sent a confirmation code",
    "confirm": "confirmed",
    "replay": "sent its failed deliveries again",
}


@router.post("/settings/webhooks/{action}", include_in_schema=False)
def change_subscriber(
    action: str,
    console: Console = Depends(account_administrator),
    form: FormData = Depends(posted),
) -> Response:
    if action not in _WEBHOOK_ACTIONS:
        return _webhooks_page(
            console, {"webhook_error": "There is no such action for a subscriber."}, 404
        )
    name = text(form, "name")
    db, actor = console.db, console.actor
    try:
        _printable({"subscriberName": name})
        if action == "enable":
            webhooks.set_enabled(db, actor, name, True)
        elif action == "disable":
            webhooks.set_enabled(db, actor, name, False)
        elif action == "remove":
            webhooks.remove(db, actor, name)
        elif action == "send-code":
            webhooks.send_code(db, actor, name)
        elif action == "confirm":
            webhooks.confirm(db, actor, name, text(form, "code"))
        else:
            webhooks.replay(db, actor, name)
    except DomainError as exc:
        return _webhooks_page(
            console,
            {"webhook_error": f"{name}: {error_text(exc)}", "error_for": name},
            status_of(exc),
        )
    return console.redirect(
        "/settings/webhooks", f"The subscriber {name} was {_WEBHOOK_ACTIONS[action]}."
    )


# ---- the audit trail --------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _record_view(record: AuditRecord) -> dict[str, Any]:
    return {
        "record": record,
        "changes": [
            (str(c.get("field")), _shown(c.get("before")), _shown(c.get("after")))
            for c in record.changes
        ],
    }


def _day(value: str, parameter: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(parameter, f"{value!r} is not a date (YYYY-MM-DD)") from None


@router.get("/settings/audit", include_in_schema=False)
def audit_page(
    console: Console = Depends(account_administrator),
    operation: str = "",
    user: str = "",
    target: str = "",
    since: str = "",
    until: str = "",
    page: str = "",
) -> Response:
    filters = {
        "operation": operation.strip(),
        "user": user.strip(),
        "target": target.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }
    context: dict[str, Any] = {
        "filters": filters,
        "operations": OPERATIONS,
        "records": [],
        "older": None,
        "newest": None,
        "filtered": any(filters.values()),
    }
    try:
        _printable({"user": filters["user"], "targetId": filters["target"]})
        first = _day(filters["since"], "since")
        last = _day(filters["until"], "until")
        if last is not None and last >= date.max:
            raise invalid("until", "is too far in the future")
        if filters["operation"] and filters["operation"].upper() not in OPERATIONS:
            raise invalid("operation", f"unknown operation {filters['operation']!r}")
        query = AuditQuery(
            user_id=acting_user_id(console.db, console.actor, filters["user"]),
            target_id=filters["target"][:255] or None,
            operation=filters["operation"] or None,
            since=as_utc_day(first),
            until=as_utc_day(last + timedelta(days=1)) if last else None,
            page_size=AUDIT_PAGE,
            page_token=page.strip() or None,
        )
        records, next_token = read_audit(console.db, console.actor, query)
    except DomainError as exc:
        context["errors"] = field_errors(exc, {"pageToken": ""})
        return _page(console, "audit", "settings_audit.html", context, status=status_of(exc))
    kept = {k: v for k, v in filters.items() if v}
    context["records"] = [_record_view(r) for r in records]
    if next_token:
        context["older"] = "/settings/audit?" + urlencode({**kept, "page": next_token})
    if page:
        context["newest"] = "/settings/audit" + ("?" + urlencode(kept) if kept else "")
    return _page(console, "audit", "settings_audit.html", context)


def as_utc_day(day: date | None) -> datetime | None:
    """Midnight UTC of `day` (the trail's filters are UTC times)."""
    if day is None:
        return None
    return as_utc(datetime(day.year, day.month, day.day))
