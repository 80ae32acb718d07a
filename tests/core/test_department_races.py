"""Concurrent changes of the department tree, on both databases: the tree never gets a cycle."""

from __future__ import annotations

import threading

from sqlalchemy import select

from learndir.core import departments as departments_core
from learndir.core.auth import authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.db.engine import Database
from learndir.db.schema import departments
from tests.support import acme_spec, make_world


def test_crossed_moves_cannot_make_a_cycle(db: Database) -> None:
    """ "Engineering under Support" and "Support under Engineering" at the same moment: one
    wins, the other is refused as a move under its own sub-department, and every path still
    follows the parents from the root."""
    for _ in range(5):
        _cross_moves_once(db)


def _cross_moves_once(db: Database) -> None:
    w = make_world(db, acme_spec(users=[]))
    owner = authenticate_token(db, w.token("owner"))
    eng, support = w.departments["eng"], w.departments["support"]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def move(parent: str, child: str) -> None:
        start.wait()
        try:
            departments_core.move_departments(db, owner, parent, [child])
            outcomes.append("moved")
        except DomainError as exc:
            assert exc.code is ErrorCode.INVALID_PARAMETERS, exc
            outcomes.append("refused")

    threads = [
        threading.Thread(target=move, args=(support, eng)),
        threading.Thread(target=move, args=(eng, support)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["moved", "refused"]
    with db.read() as conn:
        rows = conn.execute(
            select(departments.c.id, departments.c.parent_id, departments.c.path).where(
                departments.c.account_id == w.account_id
            )
        ).all()
    by_id = {r.id: r for r in rows}
    for row in rows:
        expected = (by_id[row.parent_id].path if row.parent_id else "/") + f"{row.id}/"
        assert row.path == expected, row
        assert row.path.startswith(f"/{w.root_id}/"), row
