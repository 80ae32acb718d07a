"""The Manager login column, applied once every row of the file is in: a manager may be
created by a row further down than the people they manage.

The manager becomes the user's supervisor (subordination "manual"); an empty cell puts the user
back to "inherit" (from the department). The same permission rules as any change of the user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select, update

from learndir.core.changes import record_user_changes, user_snapshot
from learndir.core.common import fold
from learndir.core.errors import DomainError
from learndir.core.imports.plan import Action, JobState, describe
from learndir.core.users.queries import views_of
from learndir.core.users.targets import authorize_target, edit_scope, load_targets
from learndir.db.schema import import_results, users

if TYPE_CHECKING:
    from learndir.core.imports.jobs import JobView

MANUAL = "manual"

_SELECT_BY_LOGIN = select(users.c.login_key, users.c.id, users.c.account_id).where(
    users.c.login_key.in_(bindparam("keys", expanding=True))
)
_SET_SUPERVISOR = (
    update(users)
    .where(users.c.id == bindparam("uid"))
    .values(subordination_type=bindparam("kind"), supervisor_id=bindparam("supervisor"))
)
_UPDATE_RESULT = (
    update(import_results)
    .where(import_results.c.id == bindparam("rid"))
    .values(
        manager=None,
        action=bindparam("new_action"),
        changes=bindparam("new_changes"),
        error=bindparam("new_error"),
    )
)


def apply_managers(
    conn: Connection, job: JobView, state: JobState, page: Sequence[Any], totals: dict[str, int]
) -> dict[str, int]:
    """Sets the supervisors a page of results asks for; returns the job's totals after."""
    actor = state.actor
    keys = list({fold(r.manager) for r in page if r.manager and r.manager.strip()})
    managers = {
        key: user_id
        for key, user_id, account_id in (
            conn.execute(_SELECT_BY_LOGIN, {"keys": keys}).all() if keys else []
        )
        if account_id == actor.account_id
    }
    views = {v.id: v for v in views_of(conn, actor.account, [r.user_id for r in page])}
    scope = edit_scope(actor)
    writes: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for r in page:
        changes = json.loads(r.changes) if r.changes else []
        action, error = r.action, None
        view = views.get(r.user_id)
        manager = (r.manager or "").strip()
        try:
            if view is None and job.options.dry_run and action == Action.CREATE.value:
                # A user the dry run would create: the manager must be there or come too.
                if (
                    manager
                    and fold(manager) not in managers
                    and not _created_by_job(conn, job.id, fold(manager))
                ):
                    raise _Problem(f"no user {manager!r} in this account or the file")
                if manager:
                    changes.append({"field": "supervisor", "before": None, "after": manager})
                updates.append(_result_update(r.id, action, changes, None))
                continue
            if view is None:
                raise _Problem("the user is gone")
            if manager:
                supervisor = managers.get(fold(manager))
                if (
                    supervisor is None
                    and job.options.dry_run
                    and _created_by_job(conn, job.id, fold(manager))
                ):
                    # Created by this (dry) run: it would be there.
                    changes.append({"field": "supervisor", "before": None, "after": manager})
                    updates.append(_result_update(r.id, action, changes, None))
                    continue
                if supervisor is None:
                    raise _Problem(f"no user {manager!r} in this account")
                if supervisor == view.id:
                    raise _Problem("a user cannot be their own manager")
                wanted: tuple[str | None, str | None] = (MANUAL, supervisor)
            else:
                wanted = (None, None)
            now = view.subordination
            current: tuple[str | None, str | None] = (
                (MANUAL, now.supervisor_id) if now.type == MANUAL else (None, None)
            )
            if wanted != current:
                target = load_targets(conn, actor, [view.id], "Manager login")[0]
                authorize_target(actor, scope, target, "Manager login")
                changes.append({"field": "supervisorId", "before": current[1], "after": wanted[1]})
                if action == Action.UNCHANGED.value:
                    action = Action.UPDATE.value
                    totals[Action.UNCHANGED.value] -= 1
                    totals[Action.UPDATE.value] += 1
                writes.append({"uid": view.id, "kind": wanted[0], "supervisor": wanted[1]})
        except _Problem as exc:
            error = f"Manager login: {exc}"
        except DomainError as exc:
            error = describe(exc, {})
        if error is not None:
            totals[Action.ERROR.value] += 1
        updates.append(_result_update(r.id, action, changes, error))
    if writes and not job.options.dry_run:
        ids = [w["uid"] for w in writes]
        before = {v.id: user_snapshot(v) for v in views.values() if v.id in set(ids)}
        conn.execute(_SET_SUPERVISOR, writes)
        record_user_changes(conn, actor.account, actor.user_id, before)
    conn.execute(_UPDATE_RESULT, updates)
    return totals


class _Problem(Exception):
    pass


def _result_update(
    result_id: int, action: str, changes: list[dict[str, Any]], error: str | None
) -> dict[str, Any]:
    return {
        "rid": result_id,
        "new_action": action,
        "new_changes": json.dumps(changes, ensure_ascii=False) if changes else None,
        "new_error": error,
    }


def _created_by_job(conn: Connection, job_id: str, login_key: str) -> bool:
    return (
        conn.execute(
            select(import_results.c.id).where(
                import_results.c.job_id == job_id,
                import_results.c.match_key == login_key,
                import_results.c.action == Action.CREATE.value,
            )
        ).first()
        is not None
    )
