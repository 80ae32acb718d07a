"""The one description of a change, and the one place that records it.

Every core function that changes something (users, departments, groups, keys, invitations,
sign-in locks, webhook subscribers) describes what it did as `Change`s and passes them to
`record` inside its own transaction. `record` writes, from the same descriptions:
- the audit trail: one `audit_log` row per change, with who (the actor, the credential from
  `core.origin`), from where (interface, client address, request id) and what (operation,
  target, the changed fields before and after; never a password or secret);
- webhook events: an `events` row per change that someone listens to, and a
  `webhook_deliveries` row per listening subscriber. Listeners come from the account settings
  cache (keyed on `settings_version`, bumped by every subscriber change), so no query is run to
  learn that nobody listens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select

from learndir.core.account_settings import Listener, account_settings
from learndir.core.actor import AccountInfo
from learndir.core.common import new_id, utcnow
from learndir.core.origin import Interface, current
from learndir.core.users.queries import Subordination, UserView, field_list, views_of
from learndir.db.engine import defer_insert
from learndir.db.schema import accounts, audit_log, events, webhook_deliveries


class EventType(StrEnum):
    USER_REGISTERED = "USER_REGISTERED"
    USER_UPDATED = "USER_UPDATED"
    USER_STATUS_CHANGED = "USER_STATUS_CHANGED"
    USER_MOVED = "USER_MOVED"
    USER_DELETED = "USER_DELETED"
    DEPARTMENT_CREATED = "DEPARTMENT_CREATED"
    DEPARTMENT_UPDATED = "DEPARTMENT_UPDATED"
    DEPARTMENT_MOVED = "DEPARTMENT_MOVED"
    DEPARTMENT_DELETED = "DEPARTMENT_DELETED"
    GROUP_CREATED = "GROUP_CREATED"
    GROUP_UPDATED = "GROUP_UPDATED"
    GROUP_DELETED = "GROUP_DELETED"
    GROUP_MEMBERS_CHANGED = "GROUP_MEMBERS_CHANGED"


class Operation(StrEnum):
    """Changes the audit trail records that webhooks do not report."""

    USER_PASSWORD_CHANGED = "USER_PASSWORD_CHANGED"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    SCIM_TOKEN_CREATED = "SCIM_TOKEN_CREATED"
    SCIM_TOKEN_REVOKED = "SCIM_TOKEN_REVOKED"
    SIGNIN_UNLOCKED = "SIGNIN_UNLOCKED"
    INVITATION_ACCEPTED = "INVITATION_ACCEPTED"
    INVITATION_RESENT = "INVITATION_RESENT"
    INVITATION_REVOKED = "INVITATION_REVOKED"
    WEBHOOK_SUBSCRIBER_CHANGED = "WEBHOOK_SUBSCRIBER_CHANGED"
    ACCOUNT_CREATED = "ACCOUNT_CREATED"
    PROFILE_FIELD_DEFINED = "PROFILE_FIELD_DEFINED"
    ROLE_CREATED = "ROLE_CREATED"
    PASSWORD_POLICY_CHANGED = "PASSWORD_POLICY_CHANGED"
    INVITATION_TEXT_CHANGED = "INVITATION_TEXT_CHANGED"


# Sent to a subscriber's callbackUrl by /webhook/code/send; not a change, never subscribed to.
CONFIRMATION_CODE = "CONFIRMATION_CODE"


class TargetKind(StrEnum):
    USER = "user"
    DEPARTMENT = "department"
    GROUP = "group"
    API_KEY = "api_key"
    SCIM_TOKEN = "scim_token"
    SIGNIN = "signin"
    WEBHOOK_SUBSCRIBER = "webhook_subscriber"
    ACCOUNT = "account"
    PROFILE_FIELD = "profile_field"
    ROLE = "role"


@dataclass(frozen=True)
class Change:
    """What one change did to one target. `type` is an EventType (audited and sent to webhook
    listeners) or an Operation (audited only). `before` and `after` are the target as a read
    shows it (never a password or secret); for users `after` may be left out and is then read
    when the change is recorded. `details` adds what a view does not show (a group's added and
    removed members). `user_ids` are the users the change concerns, for the subscriptions'
    userIds filters (a user change concerns its user)."""

    type: EventType | Operation
    kind: TargetKind
    target_id: str
    actor_id: str | None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    user_ids: tuple[str, ...] = ()

    def concerns(self) -> frozenset[str]:
        ids = set(self.user_ids)
        if self.kind is TargetKind.USER:
            ids.add(self.target_id)
        return frozenset(ids)


def record(conn: Connection, account: AccountInfo, changes: Iterable[Change]) -> None:
    """Records `changes` in the caller's transaction (see the module's docstring)."""
    changes = list(changes)
    if not changes:
        return
    missing = [
        c.target_id
        for c in changes
        if c.kind is TargetKind.USER and c.after is None and c.type != EventType.USER_DELETED
    ]
    read = user_snapshots(conn, account, missing) if missing else {}
    complete = [
        replace(c, after=read.get(c.target_id)) if c.target_id in read and c.after is None else c
        for c in changes
    ]
    now = utcnow()
    _audit(conn, account, complete, now)
    _queue_events(conn, account, complete, now)


def _audit(conn: Connection, account: AccountInfo, changes: list[Change], now: datetime) -> None:
    origin = current()
    who = {
        "account_id": account.id,
        "occurred_at": now,
        "interface": (origin.interface if origin is not None else Interface.CLI).value,
        "client_address": origin.client_address if origin is not None else None,
        "request_id": origin.request_id if origin is not None else None,
        "credential": origin.credential if origin is not None else None,
        "actor_login": origin.login if origin is not None else None,
    }
    # Nobody reads it back: on PostgreSQL it goes with the request's commit (one round trip).
    defer_insert(
        conn,
        audit_log,
        [
            {
                **who,
                "actor_user_id": change.actor_id,
                "operation": change.type.value,
                "target_kind": change.kind.value,
                "target_id": change.target_id,
                "changes": _json(differences(change.before or {}, change.after or {})),
                "details": _json(change.details) if change.details else None,
            }
            for change in changes
        ],
    )


def _queue_events(
    conn: Connection, account: AccountInfo, changes: list[Change], now: datetime
) -> None:
    listeners = _listeners(conn, account)
    if not listeners:
        return
    by_type: dict[str, list[Listener]] = {}
    for listener in listeners:
        by_type.setdefault(listener.event_type, []).append(listener)
    relevant = [c for c in changes if c.type in by_type]
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for change in relevant:
        concerned = change.concerns()
        subscribers = [
            listener.subscriber_id
            for listener in by_type[change.type]
            # The vendor's userIds filter applies where an event has users.
            if listener.user_ids is None or not concerned or concerned & listener.user_ids
        ]
        if not subscribers:
            continue
        after = change.after
        event_id = new_id()
        payload = event_payload(event_id, change.type, now, account.url, change.actor_id)
        payload[change.kind.value] = after if after is not None else change.before
        if change.before is not None and after is not None:
            payload["changes"] = differences(change.before, after)
        payload.update(change.details)
        event_rows.append(_event_row(event_id, account.id, change.type, now, payload))
        delivery_rows.extend(_delivery_row(s, event_id, now) for s in subscribers)
    if event_rows:
        conn.execute(insert(events), event_rows)
        conn.execute(insert(webhook_deliveries), delivery_rows)


def queue_event(
    conn: Connection,
    account: AccountInfo,
    event_type: str,
    data: Mapping[str, Any],
    subscriber_ids: Sequence[str],
) -> str:
    """Writes one event for the given subscribers, whatever they subscribed to (the
    confirmation code); returns the event id."""
    now = utcnow()
    event_id = new_id()
    payload = event_payload(event_id, event_type, now, account.url, None)
    payload.update(data)
    conn.execute(insert(events), [_event_row(event_id, account.id, event_type, now, payload)])
    conn.execute(
        insert(webhook_deliveries), [_delivery_row(s, event_id, now) for s in subscriber_ids]
    )
    return event_id


def event_payload(
    event_id: str, event_type: str, when: datetime, account_url: str, actor_id: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "eventId": event_id,
        "type": event_type,
        "time": iso_utc(when),
        "accountUrl": account_url,
    }
    if actor_id is not None:
        out["actorId"] = actor_id
    return out


def iso_utc(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The fields that differ, as [{field, before, after}]; profile fields by their name."""
    old, new = _flat(before), _flat(after)
    return [
        {"field": name, "before": old.get(name), "after": new.get(name)}
        for name in sorted(set(old) | set(new), key=lambda n: (n not in new, n))
        if old.get(name) != new.get(name)
    ]


def _flat(view: Mapping[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in view.items() if k != "fields"}
    for item in view.get("fields", ()):
        flat[item["name"]] = item["value"]
    return flat


def user_snapshot(view: UserView) -> dict[str, Any]:
    """A user as webhook events (and later the audit trail) show it: the fields as the REST
    API lists them ([{name, value}], upper-case names), ids for the rest."""
    return {
        "userId": view.id,
        "departmentId": view.department_id,
        "status": view.status,
        "fields": field_list(view.fields),
        "roleIds": sorted(role.id for role, _ in view.roles),
        "groupIds": list(view.groups),
        "subordination": _subordination(view.subordination),
        "coSubordination": _subordination(view.co_subordination),
        "workLeave": (
            {
                "reason": view.work_leave.reason,
                "startDate": _date(view.work_leave.start),
                "endDate": _date(view.work_leave.end),
            }
            if view.work_leave is not None
            else None
        ),
    }


def _subordination(s: Subordination) -> dict[str, Any]:
    return {"type": s.type, "supervisorId": s.supervisor_id}


def _date(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def user_snapshots(
    conn: Connection, account: AccountInfo, user_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    return {v.id: user_snapshot(v) for v in views_of(conn, account, user_ids)}


def users_before(
    conn: Connection, account: AccountInfo, user_ids: Sequence[str]
) -> dict[str, dict[str, Any]] | None:
    """The users as they are before a change; pass the result to `record_user_changes` after
    the change."""
    if not user_ids:
        return None
    return user_snapshots(conn, account, user_ids)


def record_user_changes(
    conn: Connection,
    account: AccountInfo,
    actor_id: str | None,
    before: dict[str, dict[str, Any]] | None,
) -> None:
    """Compares the users of `before` with what they are now and records one change per user
    and kind: USER_DELETED when gone, USER_MOVED when the department changed,
    USER_STATUS_CHANGED when the status did, USER_UPDATED when anything else did. Each
    carries the full list of what changed."""
    if not before:
        return
    after = user_snapshots(conn, account, list(before))
    changes: list[Change] = []
    for user_id, old in before.items():
        new = after.get(user_id)
        if new is None:
            changes.append(
                Change(EventType.USER_DELETED, TargetKind.USER, user_id, actor_id, before=old)
            )
            continue
        changed = {d["field"] for d in differences(old, new)}
        kinds: list[EventType] = []
        if "departmentId" in changed:
            kinds.append(EventType.USER_MOVED)
        if "status" in changed:
            kinds.append(EventType.USER_STATUS_CHANGED)
        if changed - {"departmentId", "status"}:
            kinds.append(EventType.USER_UPDATED)
        changes.extend(
            Change(kind, TargetKind.USER, user_id, actor_id, before=old, after=new)
            for kind in kinds
        )
    record(conn, account, changes)


def password_changed(
    user_id: str,
    actor_id: str | None,
    operation: Operation = Operation.USER_PASSWORD_CHANGED,
    *,
    had_password: bool = True,
) -> Change:
    """What the trail shows of a password: that it changed, never a value or a hash."""
    return Change(
        operation,
        TargetKind.USER,
        user_id,
        actor_id,
        before={"password": "(old, not shown)" if had_password else None},
        after={"password": "(new, not shown)"},
    )


def account_info(conn: Connection, account_id: str) -> AccountInfo:
    """The account as `record` needs it, for changes made without an actor (the scheduler)."""
    row = conn.execute(
        select(
            accounts.c.url,
            accounts.c.name,
            accounts.c.password_min_length,
            accounts.c.settings_version,
        ).where(accounts.c.id == account_id)
    ).one()
    return AccountInfo(
        id=account_id,
        url=row.url,
        name=row.name,
        seat_limit=None,
        password_min_length=row.password_min_length,
        settings_version=row.settings_version,
    )


def _listeners(conn: Connection, account: AccountInfo) -> tuple[Listener, ...]:
    return account_settings(conn, account).listeners


def _event_row(
    event_id: str, account_id: str, event_type: str, when: datetime, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": event_id,
        "account_id": account_id,
        "type": event_type,
        "occurred_at": when,
        "payload": _json(payload),
    }


def _json(value: Any) -> str:
    """Compact JSON, UTF-8 as it is: what json.dumps(ensure_ascii=False, separators=(",",
    ":")) writes, ten times as fast (a bulk import writes one record per user)."""
    return orjson.dumps(value).decode()


def _delivery_row(subscriber_id: str, event_id: str, when: datetime) -> dict[str, Any]:
    return {
        "subscriber_id": subscriber_id,
        "event_id": event_id,
        "status": "pending",
        "attempts": 0,
        "created_at": when,
    }
