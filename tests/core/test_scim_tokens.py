"""SCIM provisioning tokens on SQLite and PostgreSQL: made for an administrator, shown once and
stored as a hash, acting as their user, refused at once when revoked; and the command line."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from learndir.core.errors import DomainError, ErrorCode
from learndir.core.roles import Permission
from learndir.core.scim_tokens import (
    TOKEN_PREFIX,
    authenticate_scim_token,
    create_scim_token,
    list_scim_tokens,
    revoke_scim_token,
)
from learndir.db.engine import Database
from learndir.db.schema import audit_log, scim_tokens, users
from tests.cli.test_cli import learndir
from tests.support import World, acme_spec, make_world


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, acme_spec())


def test_a_token_acts_as_its_user_until_revoked(world: World, db: Database) -> None:
    made = create_scim_token(db, world.account_url, "sales.admin")
    assert made.token.startswith(TOKEN_PREFIX) and len(made.token) > 40
    with db.read() as conn:
        stored = conn.execute(
            select(scim_tokens.c.token_hash).where(scim_tokens.c.id == made.token_id)
        ).scalar_one()
    assert made.token not in stored and len(stored) == 64
    actor = authenticate_scim_token(db, made.token)
    assert actor.user_id == world.users["sales.admin"]
    # A department administrator's token reaches its departments only.
    assert not actor.scope(Permission.ADD_USERS).account_wide
    listed = {t.token_id: t for t in list_scim_tokens(db, world.account_url)}
    assert listed[made.token_id].login == "sales.admin"
    assert listed[made.token_id].last_used_at is not None

    info, revoked = revoke_scim_token(db, made.token_id)
    assert revoked and info.revoked_at is not None
    with pytest.raises(DomainError) as caught:
        authenticate_scim_token(db, made.token)
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    assert "revoked" in (caught.value.reason or "")
    again, revoked_again = revoke_scim_token(db, made.token_id)
    assert not revoked_again and again.revoked_at == info.revoked_at
    with db.read() as conn:
        operations = (
            conn.execute(
                select(audit_log.c.operation)
                .where(audit_log.c.target_id == made.token_id)
                .order_by(audit_log.c.id)
            )
            .scalars()
            .all()
        )
    assert operations == ["SCIM_TOKEN_CREATED", "SCIM_TOKEN_REVOKED"]


def test_what_is_refused(world: World, db: Database) -> None:
    with pytest.raises(DomainError) as caught:
        create_scim_token(db, world.account_url, "jane.doe")  # a learner
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    with pytest.raises(DomainError) as caught:
        create_scim_token(db, "http://nowhere.learn.test", None)
    assert caught.value.code is ErrorCode.NOT_FOUND
    for token in (None, "", "scim_unknown"):
        with pytest.raises(DomainError) as caught:
            authenticate_scim_token(db, token)
        assert caught.value.code is ErrorCode.UNAUTHENTICATED
    with pytest.raises(DomainError) as caught:
        revoke_scim_token(db, "not-a-token-id")
    assert caught.value.code is ErrorCode.NOT_FOUND
    made = create_scim_token(db, world.account_url, "admin")
    with db.write() as conn:
        conn.execute(update(users).where(users.c.id == world.users["admin"]).values(status=3))
    with pytest.raises(DomainError) as caught:
        authenticate_scim_token(db, made.token)
    assert caught.value.code is ErrorCode.UNAUTHENTICATED


def test_the_command_line(world: World, database_url: str, db: Database) -> None:
    made = learndir(
        "scim-token",
        "create",
        "--account-url",
        world.account_url,
        "--database-url",
        database_url,
        "--invite",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    assert set(token) == {"tokenId", "token"}
    assert authenticate_scim_token(db, token["token"]).user_id == world.users["owner"]
    listed = learndir(
        "scim-token",
        "list",
        "--account-url",
        world.account_url,
        "--database-url",
        database_url,
        "--json",
    )
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [e["tokenId"] for e in entries] == [token["tokenId"]]
    assert "token" not in entries[0] and entries[0]["login"] == "owner"
    assert entries[0]["invite"] is True
    revoked = learndir("scim-token", "revoke", token["tokenId"], "--database-url", database_url)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    with pytest.raises(DomainError):
        authenticate_scim_token(db, token["token"])
    learner = learndir(
        "scim-token",
        "create",
        "--account-url",
        world.account_url,
        "--login",
        "jane.doe",
        "--database-url",
        database_url,
    )
    assert learner.returncode == 6 and "jane.doe" in learner.stderr
