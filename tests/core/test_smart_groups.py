"""Smart groups in the core, on both databases: refresh_memberships costs nothing without
smart groups, follows the settings version when groups change, and recomputes per user."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from learndir.core import groups, smart_groups
from learndir.core.auth import authenticate_token
from learndir.core.users.commands import AddUser, parse_command
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import group_members
from tests.support import acme_spec, make_world, statements_sent


def members(db: Database, group_id: str) -> set[str]:
    with db.read() as conn:
        return set(
            conn.scalars(
                select(group_members.c.user_id).where(group_members.c.group_id == group_id)
            )
        )


def command(department_id: str, **fields: str) -> AddUser:
    uid = uuid.uuid4().hex[:8]
    return parse_command(
        AddUser,
        {
            "login": f"c{uid}",
            "departmentId": department_id,
            "fields": {"employee_id": f"C{uid}", "country": "DE", **fields},
        },
    )


def test_no_smart_groups_one_primary_key_read(db: Database) -> None:
    world = make_world(db, acme_spec(users=[]))
    owner = authenticate_token(db, world.token("owner"))
    with db.write() as conn:
        smart_groups.refresh_memberships(conn, owner.account, [world.users["owner"]])  # warm
        with statements_sent(conn) as statements:
            smart_groups.refresh_memberships(conn, owner.account, [world.users["owner"]])
    assert len(statements) == 1
    assert "settings_version" in statements[0]


def test_an_actor_authenticated_before_a_smart_group_changed_sees_the_change(
    db: Database,
) -> None:
    """The actor's settings version is read at authentication; a smart group deleted or created
    after that (while its password was being hashed, say) is still seen by its addUser."""
    world = make_world(db, acme_spec(users=[]))
    sales = world.departments["sales"]
    rules = {"and": [{"or": [{"rule": {"attributeType": 1, "operator": 2, "value": sales}}]}]}
    early = authenticate_token(db, world.token("owner"))
    first = groups.create_smart_group(db, early, "Sales", rules)
    stale = authenticate_token(db, world.token("owner"))
    add_user(db, stale, command(sales))  # warms the cache with the first group
    groups.delete_group(db, early, first)
    second = groups.create_smart_group(db, early, "Sales again", rules)
    # `stale` still carries the version from before the delete and the create.
    added = add_user(db, stale, command(world.departments["sales-eu"]))
    assert added in members(db, second)


def test_membership_follows_rules_and_users(db: Database) -> None:
    world = make_world(db, acme_spec(users=[]))
    owner = authenticate_token(db, world.token("owner"))
    sales = world.departments["sales"]
    group_id = groups.create_smart_group(
        db,
        owner,
        "Sales",
        {"and": [{"or": [{"rule": {"attributeType": "1", "operator": "2", "value": sales}}]}]},
    )
    # The creating request bumped the settings version: a fresh actor sees the new group.
    owner = authenticate_token(db, world.token("owner"))
    in_eu = add_user(db, owner, command(world.departments["sales-eu"]))
    in_eng = add_user(db, owner, command(world.departments["eng"]))
    assert members(db, group_id) == {in_eu}
    with db.write() as conn:
        with statements_sent(conn) as statements:
            smart_groups.refresh_memberships(conn, owner.account, [in_eu, in_eng])
        # The settings version, then one DELETE and one INSERT ... SELECT per smart group:
        # set-based, not per user.
        assert len(statements) == 3
    assert members(db, group_id) == {in_eu}
    groups.delete_group(db, owner, group_id)
    owner = authenticate_token(db, world.token("owner"))
    with db.write() as conn:
        assert smart_groups.account_smart_groups(conn, owner.account) == ()


def test_rules_round_trip() -> None:
    parsed = (
        (
            smart_groups.Rule(
                smart_groups.AttributeType.PROFILE_FIELD,
                "JOB_TITLE",
                smart_groups.Operator.ONLY,
                "Engineer",
            ),
        ),
    )
    assert smart_groups.load_rules(smart_groups.dump_rules(parsed)) == parsed
