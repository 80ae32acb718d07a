"""addUser's statements are answered by the indexes that fit them, on tables whose statistics
were never gathered (the state of every fresh or fast-growing account): no plan may depend on
the planner's guesses. The statements are the ones a real addUser sends (captured while it
runs), explained with their own parameters."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text

from learndir.core.auth import authenticate_credentials, authenticate_token
from learndir.core.common import utcnow
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.origin import Interface, Origin, acting_from
from learndir.core.users.changes import ACTIVE, INACTIVE
from learndir.core.users.commands import AddUser
from learndir.core.users.schedules import apply_due_changes
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.migrate import upgrade_database
from learndir.db.schema import signin_failures, user_field_values, users
from tests.support import World, acme_spec, fresh_postgres_database, make_world, postgres_available

EXISTING_USERS = 3000
# The indexes an addUser statement on these tables may use: primary keys and unique indexes.
ALLOWED = {
    "users": {"pk_users", "uq_users_login_key_account_id", "uq_users_email_key_account_id"},
    "user_field_values": {"pk_user_field_values", "uq_user_field_values_field_id_unique_key"},
    "departments": {"pk_departments"},
    "import_results": {
        "pk_import_results",
        "ix_import_results_match_key_job_id",
        "ix_import_results_job_id_id",
    },
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def never_analysed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """An acme account with thousands of users, on a database whose statistics were never
    gathered (autovacuum is off on PostgreSQL, and nothing here runs ANALYZE)."""
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('plans')) / 'plans.db'}"
        yield from _world(url)
        return
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with fresh_postgres_database("learndir_plans") as url:
        yield from _world(url)


def _world(url: str) -> Iterator[World]:
    upgrade_database(url)
    db = Database(url)
    try:
        world = make_world(db, acme_spec(seatLimit=None))
        _bulk_users(world, EXISTING_USERS)
        with db.read() as conn:
            if not db.is_sqlite:
                analysed = conn.execute(
                    text("SELECT count(*) FROM pg_stats WHERE tablename = 'users'")
                ).scalar_one()
                assert analysed == 0, "the users table has statistics"
            else:
                has_stat = conn.execute(
                    text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
                ).scalar_one()
                assert has_stat == 0
        yield world
    finally:
        db.dispose()


def _bulk_users(world: World, n: int) -> None:
    """Users straight into the tables, with a unique custom value each."""
    with world.db.read() as conn:
        field_id = conn.execute(
            text(
                "SELECT id FROM profile_fields WHERE account_id = :a AND name_key = 'employee_id'"
            ),
            {"a": world.account_id},
        ).scalar_one()
        added_at = conn.execute(select(func.max(users.c.added_at))).scalar_one()
    rows = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "account_id": world.account_id,
            "department_id": world.root_id,
            "login": f"bulk{i}",
            "login_key": f"bulk{i}",
            "email": f"bulk{i}@acme.test",
            "email_key": f"bulk{i}@acme.test",
            "status": 1,
            "added_at": added_at,
        }
        for i in range(n)
    ]
    with world.db.write() as conn:
        conn.execute(insert(users), rows)
        conn.execute(
            insert(user_field_values),
            [
                {"user_id": r["id"], "field_id": field_id, "value": f"B{i}", "unique_key": f"b{i}"}
                for i, r in enumerate(rows)
            ],
        )


def _captured(db: Database, call: Any) -> list[tuple[str, Any]]:
    """The statements `call` sends, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        # A statement run for several rows is planned with its first row's values.
        seen.append((statement, parameters[0] if many else parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen


def _plans(db: Database, statements: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(statement, its plan) for every statement that reads or writes rows."""
    explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    result = []
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for statement, parameters in statements:
            if not re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT)\b", statement, re.IGNORECASE):
                continue
            cursor = raw.cursor()
            cursor.execute(explain + statement, parameters)
            plan = "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())
            cursor.close()
            result.append((statement, plan))
        raw.rollback()
    return result


def _problems(db: Database, plan: str) -> list[str]:
    found = []
    if db.is_sqlite:
        for table in ALLOWED:
            if re.search(rf"\bSCAN {table}\b", plan):
                found.append(f"full scan of {table}")
        # Primary keys and unique constraints are SQLite's automatic indexes; the others are
        # learndir's ix_ indexes, led by account_id.
        for table, index in re.findall(r"SEARCH (\w+) USING (?:COVERING )?INDEX (\w+)", plan):
            if (
                table in ALLOWED
                and not index.startswith("sqlite_autoindex_")
                and index not in ALLOWED[table]
            ):
                found.append(f"{table} searched with {index}")
        return found
    for table in re.findall(r"Seq Scan on (\w+)", plan):
        if table in ALLOWED:
            found.append(f"sequential scan of {table}")
    for index, table in re.findall(r"Index (?:Only )?Scan using (\w+) on (\w+)", plan):
        if table in ALLOWED and index not in ALLOWED[table]:
            found.append(f"{table} read with {index}")
    return found


def _add(world: World, **taken: str) -> Any:
    """An addUser of a new person, or with the values in `taken` that others hold."""
    actor = authenticate_token(world.db, world.token("owner"))
    new = uuid.uuid4().hex[:8]
    cmd = AddUser(
        login=taken.get("login", f"plan.{new}"),
        email=taken.get("email", f"plan.{new}@acme.test"),
        department_id=world.root_id,
        fields={"employee_id": taken.get("employee_id", f"P-{new}"), "country": "DE"},
    )
    return lambda: add_user(world.db, actor, cmd)


def test_add_user_statements_use_the_unique_indexes(never_analysed: World) -> None:
    world = never_analysed
    statements = _captured(world.db, _add(world))
    plans = _plans(world.db, statements)
    assert any("INSERT INTO users" in s for s, _ in plans)
    for statement, plan in plans:
        assert not _problems(world.db, plan), (statement, plan)


def test_the_token_statement_reads_departments_by_their_key(never_analysed: World) -> None:
    """The token's statement that also reads the departments an addUser names (PostgreSQL,
    see core.departments.READ_AHEAD_COLUMN), as a request runs it."""
    world = never_analysed
    token = world.token("owner")

    def authenticate() -> None:
        world.db.run(
            lambda: authenticate_token(world.db, token, departments=[world.root_id]), writes=True
        )

    plans = _plans(world.db, _captured(world.db, authenticate))
    token_plans = [p for s, p in plans if s.startswith("SELECT access_tokens")]
    assert len(token_plans) == 1, plans
    if not world.db.is_sqlite:
        assert "read_ahead" in token_plans[0] and "pk_departments" in token_plans[0]
    for statement, plan in plans:
        assert not _problems(world.db, plan), (statement, plan)


@pytest.mark.parametrize(
    ("taken", "code", "index"),
    [
        # The unique index by name on PostgreSQL, by what it searches on SQLite.
        (
            {"login": "BULK7"},
            ErrorCode.LOGIN_TAKEN,
            ("uq_users_login_key_account_id", "(login_key=?)"),
        ),
        (
            {"email": "Bulk8@acme.test"},
            ErrorCode.EMAIL_TAKEN,
            ("uq_users_email_key_account_id", "(email_key=?)"),
        ),
        (
            {"employee_id": "b9"},
            ErrorCode.FIELD_VALUE_TAKEN,
            ("uq_user_field_values_field_id_unique_key", "(field_id=? AND unique_key=?)"),
        ),
    ],
)
def test_duplicates_are_found_by_their_own_index(
    never_analysed: World, taken: dict[str, str], code: ErrorCode, index: tuple[str, str]
) -> None:
    world = never_analysed
    before = world.snapshot()

    def refused() -> None:
        with pytest.raises(DomainError) as caught:
            _add(world, **taken)()
        assert caught.value.code is code

    plans = _plans(world.db, _captured(world.db, refused))
    assert world.snapshot() == before
    used = index[1] if world.db.is_sqlite else index[0]
    lookups = [p for s, p in plans if s.lstrip().upper().startswith("SELECT") and used in p]
    assert lookups, [p for _, p in plans]
    for statement, plan in plans:
        assert not _problems(world.db, plan), (statement, plan)


def test_sign_in_statements_use_keys(never_analysed: World) -> None:
    """A sign-in (right or wrong password, unknown login) finds the user by its unique index
    and its failure counts by their primary key, also when a guesser has filled the counts."""
    world = never_analysed
    origin = Origin(Interface.REST, client_address="192.0.2.10")
    now = utcnow()
    with world.db.write() as conn:
        conn.execute(
            insert(signin_failures),
            [
                {
                    "scope": "address",
                    "subject": f"198.18.{i // 250}.{i % 250}",
                    "failures": 1,
                    "first_failed_at": now,
                    "last_failed_at": now,
                }
                for i in range(EXISTING_USERS)
            ],
        )

    def sign_ins() -> None:
        with acting_from(origin):
            authenticate_credentials(world.db, world.account_url, "owner", "Owner-Pass-1")
            for login in ("owner", "bulk17@acme.test", "nobody"):
                with pytest.raises(DomainError):
                    authenticate_credentials(world.db, world.account_url, login, "wrong")
            authenticate_credentials(world.db, world.account_url, "owner", "Owner-Pass-1")

    plans = _plans(world.db, _captured(world.db, sign_ins))
    assert any("signin_failures" in s for s, _ in plans)
    for statement, plan in plans:
        assert not _problems(world.db, plan), (statement, plan)
        assert not re.search(r"Seq Scan on signin_failures|SCAN signin_failures\b", plan), (
            statement,
            plan,
        )


def test_an_import_batch_reads_by_keys(never_analysed: World, tmp_path: Path) -> None:
    """An import's bulk lookups (a batch's logins, e-mails, unique values, the users they name
    and the rows before them in the file) use the keys' indexes, however many keys a batch
    has: never a scan of the account."""
    from learndir.core.auth import load_actor
    from learndir.core.imports.jobs import JobRunner, create_job, file_opener, parse_options

    world = never_analysed
    path = tmp_path / "batch.csv"
    lines = ["Login,Email,First Name,Employee ID,Country,Department ID"]
    lines += [f"bulk{i},bulk{i}@acme.test,Changed,B{i},DE,{world.root_id}" for i in range(60)]
    new = uuid.uuid4().hex[:6]
    lines += [
        f"imp{new}{i},imp{new}{i}@acme.test,New,I{new}{i},DE,{world.root_id}" for i in range(60)
    ]
    path.write_text("\n".join(lines) + "\n")
    with world.db.read() as conn:
        actor = load_actor(conn, world.users["owner"])
    assert actor is not None
    job_id = create_job(
        world.db, actor, parse_options("upsert", None, False, False), "batch.csv", Interface.CLI
    )
    statements = _captured(
        world.db, lambda: JobRunner(world.db, job_id, file_opener(path)).run_to_end()
    )
    single = [(s, p) for s, p in statements if not isinstance(p, list)]
    plans = _plans(world.db, single)
    assert any("json_each" in s or "unnest" in s for s, _ in plans)
    for statement, plan in plans:
        # The job reads the account's department tree once, by account, on purpose.
        problems = [p for p in _problems(world.db, plan) if not p.startswith("departments")]
        assert not problems, (statement, plan)


def test_scim_lookups_use_keys(never_analysed: World) -> None:
    """What identity providers send before every create (a filter on userName, externalId or
    the work e-mail, and a read by id) is answered from indexes on never-analysed tables."""
    from learndir.core.scim.resources import Query
    from learndir.core.scim.users import create_user, get_user, list_users

    world = never_analysed
    actor = authenticate_token(world.db, world.token("owner"))
    new = uuid.uuid4().hex[:8]
    created = create_user(
        world.db,
        actor,
        {
            "userName": f"scim.{new}",
            "externalId": f"ext-{new}",
            "emails": [{"value": f"scim.{new}@acme.test", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": f"S-{new}"
            },
            "urn:learndir:params:scim:schemas:extension:learndir:2.0:User": {"country": "DE"},
        },
        "http://x/scim/v2",
        None,
    )

    def lookups() -> None:
        for flt in (
            f'userName eq "SCIM.{new}"',
            f'externalId eq "ext-{new}"',
            f'emails[type eq "work"].value eq "scim.{new}@acme.test"',
            'userName eq "bulk17"',
        ):
            assert list_users(world.db, actor, Query(filter=flt), "http://x/scim/v2").total == 1
        get_user(world.db, actor, created["id"], "http://x/scim/v2")

    plans = _plans(world.db, _captured(world.db, lookups))
    assert any("scim_users" in s for s, _ in plans)
    for statement, plan in plans:
        scans = re.findall(r"Seq Scan on (\w+)|\bSCAN (\w+)\b", plan)
        scanned = {t for pair in scans for t in pair if t}
        assert not scanned & {"users", "scim_users", "scim_user_emails", "user_field_values"}, (
            statement,
            plan,
        )


def test_the_scheduler_asks_the_date_indexes(never_analysed: World) -> None:
    """Whether a scheduled change is due, which every server process asks every half minute,
    is answered from the dates' own indexes on never-analysed tables, never by reading the whole
    users table; with nothing due those probes are all it sends. A change that is due is
    still found and carried out."""
    world = never_analysed
    day = utcnow().date()

    def probes(statements: list[tuple[str, Any]]) -> list[tuple[str, str]]:
        return [
            (statement, plan)
            for statement, plan in _plans(world.db, statements)
            if "LIMIT" in statement.upper()
        ]

    idle = _captured(world.db, lambda: apply_due_changes(world.db, day))
    plans = probes(idle)
    assert len(plans) == len(idle) == 2, idle
    for (_statement, plan), index in zip(
        plans, ("ix_users_deactivate_on", "ix_users_terminate_on"), strict=True
    ):
        if world.db.is_sqlite:
            assert re.search(rf"SEARCH users USING (COVERING )?INDEX {index}\b", plan), plan
            assert not re.search(r"\bSCAN users\b", plan), plan
        else:
            assert f"Index Scan using {index} on users" in plan, plan
            assert "Seq Scan" not in plan, plan

    user_id = str(uuid.uuid4())
    with world.db.write() as conn:
        conn.execute(
            insert(users).values(
                id=user_id,
                account_id=world.account_id,
                department_id=world.root_id,
                login=f"due.{user_id[:8]}",
                login_key=f"due.{user_id[:8]}",
                status=ACTIVE,
                added_at=utcnow(),
                deactivate_on=day,
            )
        )
    due = _captured(world.db, lambda: apply_due_changes(world.db, day))
    with world.db.read() as conn:
        status, pending = conn.execute(
            select(users.c.status, users.c.deactivate_on).where(users.c.id == user_id)
        ).one()
    assert (status, pending) == (INACTIVE, None)
    for statement, plan in probes(due):
        assert not re.search(r"Seq Scan on users|\bSCAN users\b", plan), (statement, plan)
