"""The core reads and membership changes the console's Departments and Groups sections use, on
both databases: user counts per department and branch, member counts per group, a smart group's
count before it is saved, and adding or removing some members of a group."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from learndir.core import departments, groups
from learndir.core.auth import authenticate_token
from learndir.core.departments import DepartmentCount
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.users.commands import AddUser
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import audit_log, group_members
from tests.support import acme_spec, make_world

# acme: owner and admin in the root, sales.admin in Sales, jane.doe in Sales EU, hr.partner in
# Engineering; jane.doe in Newcomers.


def test_user_counts_per_department_and_branch(db: Database) -> None:
    world = make_world(db, acme_spec())
    d = world.departments
    owner = authenticate_token(db, world.token("owner"))
    counts = departments.user_counts(db, owner)
    assert counts[world.root_id] == DepartmentCount(2, 5)
    assert counts[d["sales"]] == DepartmentCount(1, 2)
    assert counts[d["sales-eu"]] == DepartmentCount(1, 1)
    assert counts[d["sales-us"]] == DepartmentCount(0, 0)
    assert counts[d["eng"]] == DepartmentCount(1, 1)
    # A department administrator: its branch only.
    sales_admin = authenticate_token(db, world.token("sales.admin"))
    scoped = departments.user_counts(db, sales_admin)
    assert set(scoped) == {d["sales"], d["sales-eu"], d["sales-us"]}
    assert scoped[d["sales"]] == DepartmentCount(1, 2)


def test_member_counts_within_what_the_actor_sees(db: Database) -> None:
    world = make_world(db, acme_spec())
    owner = authenticate_token(db, world.token("owner"))
    newcomers, managers = world.groups["Newcomers"], world.groups["Managers"]
    groups.set_members(db, owner, managers, [world.users["hr.partner"], world.users["jane.doe"]])
    assert groups.member_counts(db, owner) == {newcomers: 1, managers: 2}
    assert groups.member_counts(db, owner, [managers]) == {managers: 2}
    assert groups.group_info(db, owner, managers) == groups.Group(managers, "Managers", False)
    sales_admin = authenticate_token(db, world.token("sales.admin"))
    assert groups.member_counts(db, sales_admin) == {newcomers: 1, managers: 1}


def _members(db: Database, group_id: str) -> set[str]:
    with db.read() as conn:
        return set(
            conn.scalars(
                select(group_members.c.user_id).where(group_members.c.group_id == group_id)
            )
        )


def test_adding_and_removing_some_members(db: Database) -> None:
    world = make_world(db, acme_spec())
    u = world.users
    owner = authenticate_token(db, world.token("owner"))
    newcomers = world.groups["Newcomers"]
    # A smart group following Newcomers follows these changes too.
    follows = groups.create_smart_group(
        db,
        owner,
        "Followers",
        {"and": [{"or": [{"rule": {"attributeType": 2, "operator": 1, "value": newcomers}}]}]},
    )
    added = groups.add_members(db, owner, newcomers, [u["jane.doe"], u["admin"]])
    assert added == [u["admin"]]  # jane.doe was a member already
    assert _members(db, newcomers) == {u["jane.doe"], u["admin"]}
    assert _members(db, follows) == {u["jane.doe"], u["admin"]}
    removed = groups.remove_members(db, owner, newcomers, [u["jane.doe"], u["hr.partner"]])
    assert removed == [u["jane.doe"]]
    assert _members(db, newcomers) == {u["admin"]}
    assert _members(db, follows) == {u["admin"]}
    with db.read() as conn:
        operations = conn.execute(
            select(audit_log.c.operation).where(
                audit_log.c.account_id == world.account_id, audit_log.c.target_id == newcomers
            )
        ).all()
    assert len(operations) == 2

    # A department administrator: only people of its departments; no smart group by hand.
    sales_admin = authenticate_token(db, world.token("sales.admin"))
    groups.add_members(db, sales_admin, newcomers, [u["jane.doe"]])
    with pytest.raises(DomainError) as refused:
        groups.add_members(db, sales_admin, newcomers, [u["hr.partner"]])
    assert refused.value.code is ErrorCode.PERMISSION_DENIED
    with pytest.raises(DomainError) as refused:
        groups.remove_members(db, sales_admin, newcomers, [u["admin"]])
    assert refused.value.code is ErrorCode.PERMISSION_DENIED
    with pytest.raises(DomainError) as refused:
        groups.add_members(db, owner, follows, [u["hr.partner"]])
    assert refused.value.parameter == "userIds"
    assert _members(db, newcomers) == {u["admin"], u["jane.doe"]}


def test_counting_who_rules_match_without_saving(db: Database) -> None:
    world = make_world(db, acme_spec())
    d = world.departments
    owner = authenticate_token(db, world.token("owner"))

    def rule(kind: int, value: str, operator: int = 1, **extra: str) -> dict[str, object]:
        return {"rule": {"attributeType": kind, "operator": operator, "value": value, **extra}}

    below_sales = {"and": [{"or": [rule(1, d["sales"], 2)]}]}
    assert groups.count_matching(db, owner, below_sales) == 2
    only_sales = {"and": [{"or": [rule(1, d["sales"])]}]}
    assert groups.count_matching(db, owner, only_sales) == 1
    either = {"and": [{"or": [rule(1, d["sales"], 2), rule(3, "DE", attributeId="country")]}]}
    assert groups.count_matching(db, owner, either) == 3  # admin's country is DE
    both = {
        "and": [{"or": [rule(1, d["sales"], 2)]}, {"or": [rule(3, "de", attributeId="country")]}]
    }
    assert groups.count_matching(db, owner, both) == 0
    # The count is what the saved group then holds.
    saved = groups.create_smart_group(db, owner, "Sales or DE", either)
    assert len(_members(db, saved)) == 3
    assert groups.count_matching(db, owner, either, saved) == 3
    # Rules are checked as when saved; only account-wide managers may ask.
    with pytest.raises(DomainError) as wrong:
        groups.count_matching(db, owner, {"and": [{"or": [rule(1, world.groups["Managers"])]}]})
    assert wrong.value.parameter == "rules.and[0].or[0].rule.value"
    self_rule = {"and": [{"or": [rule(2, saved)]}]}
    with pytest.raises(DomainError):
        groups.count_matching(db, owner, self_rule, saved)
    sales_admin = authenticate_token(db, world.token("sales.admin"))
    with pytest.raises(DomainError) as refused:
        groups.count_matching(db, sales_admin, below_sales)
    assert refused.value.code is ErrorCode.PERMISSION_DENIED


def test_member_pages_in_id_order_within_what_the_actor_sees(db: Database) -> None:
    world = make_world(db, acme_spec())
    u = world.users
    owner = authenticate_token(db, world.token("owner"))
    managers = world.groups["Managers"]
    everyone = sorted(u[login] for login in ("admin", "hr.partner", "jane.doe", "sales.admin"))
    groups.set_members(db, owner, managers, everyone)
    first, token = groups.member_page(db, owner, managers, 3, None)
    assert [v.id for v in first] == everyone[:3] and token is not None
    rest, token = groups.member_page(db, owner, managers, 3, token)
    assert [v.id for v in rest] == everyone[3:] and token is None
    assert {v.fields["login"] for v in (*first, *rest)} >= {"jane.doe", "admin"}
    sales_admin = authenticate_token(db, world.token("sales.admin"))
    mine, _ = groups.member_page(db, sales_admin, managers, 50, None)
    assert [v.id for v in mine] == sorted([u["jane.doe"], u["sales.admin"]])
    with pytest.raises(DomainError) as unknown:
        groups.member_page(db, owner, "nope", 50, None)
    assert unknown.value.code is ErrorCode.NOT_FOUND


def test_a_department_administrators_member_pages_read_a_bounded_number_of_members(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page reads at most SCOPED_SCAN_BUDGET members: with few of the group's members in
    the administrator's departments, pages may come short, but paging on gives each of them
    exactly once, in id order, and nobody else."""
    world = make_world(db, acme_spec(seatLimit=None))
    owner = authenticate_token(db, world.token("owner"))
    added = {}
    for n in range(12):
        department = "sales-eu" if n % 4 == 0 else "eng"
        added[f"m{n}"] = add_user(
            db,
            owner,
            AddUser(
                login=f"m{n}",
                departmentId=world.departments[department],
                fields={"employee_id": f"M-{n}", "country": "DE"},
            ),
        )
    managers = world.groups["Managers"]
    groups.set_members(db, owner, managers, list(added.values()))
    mine = sorted(added[f"m{n}"] for n in range(0, 12, 4))
    monkeypatch.setattr(groups, "SCOPED_SCAN_BATCH", 2)
    monkeypatch.setattr(groups, "SCOPED_SCAN_BUDGET", 4)
    sales_admin = authenticate_token(db, world.token("sales.admin"))
    seen: list[str] = []
    token = None
    for _ in range(20):
        views, token = groups.member_page(db, sales_admin, managers, 2, token)
        assert len(views) <= 2
        seen.extend(v.id for v in views)
        if token is None:
            break
    assert seen == mine
    # The owner's pages are full ones, every member.
    views, token = groups.member_page(db, owner, managers, 50, None)
    assert sorted(v.id for v in views) == sorted(added.values()) and token is None
