"""The console's people search reads users through the indexes that fit it, on tables whose
statistics were never gathered (autovacuum is off, nothing runs ANALYZE): a text is index
ranges of logins, e-mails and names, a status is (account_id, status, id), and no statement
reads the account's users one by one. The statements are those a real search sends (captured
while it runs), explained with their own parameters."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, insert, select, text

from learndir.core.auth import authenticate_token
from learndir.core.users.changes import INACTIVE
from learndir.core.users.search import PeopleCriteria, search_users
from learndir.db.engine import Database
from learndir.db.migrate import upgrade_database
from learndir.db.schema import user_roles, users
from tests.core.test_query_plans import _captured, _plans
from tests.support import ROOT, World, fresh_postgres_database, make_world, postgres_available

EXISTING_USERS = 4000
FIRST = ("anna", "bert", "carl", "dora", "emil", "frida", "gustav", "hanna")
LAST = ("berg", "anders", "nilsson", "lund", "roth", "strand", "ek", "holm")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def never_analysed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('people-plans')) / 'plans.db'}"
        yield from _world(url)
        return
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with fresh_postgres_database("learndir_people_plans") as url:
        yield from _world(url)


def _world(url: str) -> Iterator[World]:
    upgrade_database(url)
    db = Database(url)
    try:
        spec: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
        spec["url"] = f"http://p-{uuid.uuid4().hex[:10]}.learn.test"
        world = make_world(db, spec)
        _bulk_users(world, EXISTING_USERS)
        if not db.is_sqlite:
            with db.read() as conn:
                analysed = conn.execute(
                    text("SELECT count(*) FROM pg_stats WHERE tablename = 'users'")
                ).scalar_one()
            assert analysed == 0, "the users table has statistics"
        yield world
    finally:
        db.dispose()


def _bulk_users(world: World, n: int) -> None:
    with world.db.read() as conn:
        added_at = conn.execute(select(func.max(users.c.added_at))).scalar_one()
    rows = [
        {
            "id": str(uuid.UUID(int=i + 1)),
            "account_id": world.account_id,
            "department_id": world.departments["eng" if i % 2 else "sales"],
            "login": f"user{i}",
            "login_key": f"user{i}",
            "email": f"user{i}@people.test",
            "email_key": f"user{i}@people.test",
            "first_name": FIRST[i % len(FIRST)].title(),
            "last_name": f"{LAST[(i // 8) % len(LAST)].title()}{i}",
            "status": INACTIVE if i % 100 == 0 else 1,
            "added_at": added_at,
        }
        for i in range(n)
    ]
    with world.db.write() as conn:
        conn.execute(insert(users), rows)
        conn.execute(
            insert(user_roles),
            [{"user_id": r["id"], "role_id": world.roles["learner"]} for r in rows],
        )


def _user_reads(db: Database, plans: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(statement, plan) of the statements that read the users table itself."""
    return [(s, p) for s, p in plans if re.search(r"\b(FROM|JOIN) users\b", s)]


def _scans_users(db: Database, plan: str) -> bool:
    if db.is_sqlite:
        return "SCAN users" in plan
    return "Seq Scan on users" in plan


TEXT_INDEXES = {
    "pk_users",
    "ix_users_login_prefix",
    "ix_users_email_prefix",
    "ix_users_first_name_prefix",
    "ix_users_last_name_prefix",
}


def _indexes_of_users(db: Database, plan: str) -> set[str]:
    if db.is_sqlite:
        found = set(re.findall(r"SEARCH users USING (?:COVERING )?INDEX (\w+)", plan))
        # SQLite's own name for the primary key's index.
        return {"pk_users" if i.startswith("sqlite_autoindex_users") else i for i in found}
    return set(re.findall(r"Index (?:Only )?Scan using (\w+) on users\b", plan))


def _search(world: World, criteria: PeopleCriteria, login: str = "owner") -> list[tuple[str, str]]:
    actor = authenticate_token(world.db, world.token(login))
    found: list[Any] = []
    statements = _captured(world.db, lambda: found.append(search_users(world.db, actor, criteria)))
    assert found and found[0].users, criteria
    return _user_reads(world.db, _plans(world.db, statements))


@pytest.mark.parametrize(
    ("words", "index"),
    [
        ("user12", "ix_users_login_prefix"),
        ("user12@people", "ix_users_email_prefix"),
        ("fri", "ix_users_first_name_prefix"),
        ("nilsson1", "ix_users_last_name_prefix"),
        ("frida strand", "ix_users_first_name_prefix"),
    ],
)
def test_a_text_is_looked_up_in_index_ranges(never_analysed: World, words: str, index: str) -> None:
    db = never_analysed.db
    plans = _search(never_analysed, PeopleCriteria(text=words))
    assert any(index in p for _, p in plans), plans
    for statement, plan in plans:
        assert not _scans_users(db, plan), (statement, plan)
        # Each range from its own index, the matches read back by primary key: nothing walks
        # the account's users.
        used = _indexes_of_users(db, plan)
        assert used <= TEXT_INDEXES, (statement, plan)


def test_a_status_is_read_from_its_index(never_analysed: World) -> None:
    db = never_analysed.db
    plans = _search(never_analysed, PeopleCriteria(status=INACTIVE))
    assert any("ix_users_status_key_id" in p for _, p in plans), plans
    for statement, plan in plans:
        assert not _scans_users(db, plan), (statement, plan)


def test_the_first_page_walks_the_account_in_id_order(never_analysed: World) -> None:
    db = never_analysed.db
    plans = _search(never_analysed, PeopleCriteria())
    for statement, plan in plans:
        assert not _scans_users(db, plan), (statement, plan)
        if db.is_sqlite:
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (statement, plan)
        else:
            assert "Sort" not in plan, (statement, plan)


@pytest.mark.parametrize("login", ["owner", "sales.admin"])
def test_a_subtree_is_read_department_by_department(never_analysed: World, login: str) -> None:
    """A department with its sub-departments (or a department administrator's own): each
    department's users from (department_id, id), in id order, never a sort of them all."""
    db = never_analysed.db
    criteria = PeopleCriteria(department_id=never_analysed.departments["sales"])
    plans = _search(never_analysed, criteria, login)
    assert any("ix_users_department_id_id" in p for _, p in plans), plans
    for statement, plan in plans:
        assert not _scans_users(db, plan), (statement, plan)
