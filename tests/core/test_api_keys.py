"""API keys and tokens in the core, on SQLite and PostgreSQL: tokens know their key, last use is
written at most once a minute, the audit credential names key and token, revoked keys buy no
token, and the account's first key is in the audit trail."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from learndir.core.api_keys import all_keys, revoke_key_by_id
from learndir.core.auth import authenticate_token, create_api_key, issue_token
from learndir.core.common import as_utc, utcnow
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.origin import Interface, Origin, acting_from
from learndir.db.engine import Database
from learndir.db.schema import access_tokens, api_keys, audit_log
from tests.support import World, acme_spec, make_world


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _token_row(db: Database, token: str) -> Any:
    with db.read() as conn:
        return conn.execute(
            select(access_tokens).where(access_tokens.c.token_hash == _sha(token))
        ).one()


def _key_row(db: Database, client_id: str) -> Any:
    with db.read() as conn:
        return conn.execute(select(api_keys).where(api_keys.c.client_id == client_id)).one()


def test_token_knows_its_key_and_last_use_is_written_once_a_minute(
    db: Database, world: World
) -> None:
    key = create_api_key(db, world.account_url, "admin")
    assert _key_row(db, key.client_id).last_used_at is None
    token = issue_token(db, key.client_id, key.client_secret, "client_credentials").access_token
    row = _token_row(db, token)
    assert row.client_id == key.client_id and row.created_at is not None
    assert row.last_used_at is None
    bought = as_utc(_key_row(db, key.client_id).last_used_at)
    assert abs(bought - utcnow()) < timedelta(minutes=1)

    origin = Origin(Interface.REST)
    with acting_from(origin):
        authenticate_token(db, token)
    assert origin.credential == f"key:{key.client_id} token:{_sha(token)[:16]}"
    assert origin.login == "admin"
    first = _token_row(db, token).last_used_at
    assert first is not None
    authenticate_token(db, token)
    assert _token_row(db, token).last_used_at == first  # within the minute: no write

    long_ago = utcnow() - timedelta(minutes=5)
    with db.write() as conn:
        conn.execute(
            update(access_tokens)
            .where(access_tokens.c.token_hash == _sha(token))
            .values(last_used_at=long_ago)
        )
        conn.execute(
            update(api_keys)
            .where(api_keys.c.client_id == key.client_id)
            .values(last_used_at=long_ago)
        )
    authenticate_token(db, token)
    assert as_utc(_token_row(db, token).last_used_at) > long_ago + timedelta(minutes=4)
    assert as_utc(_key_row(db, key.client_id).last_used_at) > long_ago + timedelta(minutes=4)


def test_revoked_key_buys_no_token_with_the_unknown_keys_answer(db: Database, world: World) -> None:
    key = create_api_key(db, world.account_url, "jane.doe")
    token = issue_token(db, key.client_id, key.client_secret, "client_credentials").access_token
    revoked, changed = revoke_key_by_id(db, key.client_id)
    assert changed and revoked.revoked_at is not None and revoked.login == "jane.doe"
    with pytest.raises(DomainError) as refused:
        issue_token(db, key.client_id, key.client_secret, "client_credentials")
    with pytest.raises(DomainError) as unknown:
        issue_token(db, "0" * 32, key.client_secret, "client_credentials")
    assert refused.value.code is ErrorCode.UNAUTHENTICATED
    assert (refused.value.message, refused.value.reason) == (
        unknown.value.message,
        unknown.value.reason,
    )
    with pytest.raises(DomainError):
        authenticate_token(db, token)
    # Revoking again records nothing more.
    again, changed = revoke_key_by_id(db, key.client_id)
    assert not changed and again.revoked_at == revoked.revoked_at
    with db.read() as conn:
        operations = conn.execute(
            select(audit_log.c.operation)
            .where(audit_log.c.target_id == key.client_id)
            .order_by(audit_log.c.id)
        ).scalars()
        assert list(operations) == ["API_KEY_CREATED", "API_KEY_REVOKED"]


def test_revocation_ends_the_users_tokens_that_predate_key_tracking(
    db: Database, world: World
) -> None:
    """Tokens bought before migration 0008 name no key: they could be the revoked key's."""
    key = create_api_key(db, world.account_url, "hr.partner")
    legacy = "legacy-" + key.client_id
    with db.write() as conn:
        conn.execute(
            insert(access_tokens).values(
                token_hash=_sha(legacy),
                user_id=world.users["hr.partner"],
                expires_at=utcnow() + timedelta(minutes=20),
            )
        )
    authenticate_token(db, legacy)
    revoke_key_by_id(db, key.client_id)
    with pytest.raises(DomainError):
        authenticate_token(db, legacy)


def test_unknown_key_is_not_found(db: Database) -> None:
    for client_id in ("0" * 32, "", "x" * 65, "a\x00b"):
        with pytest.raises(DomainError) as error:
            revoke_key_by_id(db, client_id)
        assert error.value.code is ErrorCode.NOT_FOUND and error.value.parameter == "clientId"


def test_account_creation_records_the_owners_key(db: Database) -> None:
    created = make_world(db, acme_spec())
    keys = all_keys(db, created.account_url)
    assert [k.login for k in keys] == ["owner"]
    with db.read() as conn:
        row = conn.execute(
            select(audit_log).where(audit_log.c.target_id == keys[0].client_id)
        ).one()
    assert row.operation == "API_KEY_CREATED" and row.actor_user_id is None
    after = {c["field"]: c["after"] for c in json.loads(row.changes)}
    assert after["userId"] == created.users["owner"]
    assert "secret" not in row.changes.lower()


def test_no_token_outlives_a_revocation_that_races_purchases(db: Database, world: World) -> None:
    """Tokens bought while the key is being revoked are refused or deleted: none survives."""
    key = create_api_key(db, world.account_url, "sales.admin")
    bought: list[str] = []
    start = threading.Barrier(5)

    def buy() -> None:
        start.wait()
        for _ in range(15):
            try:
                issued = issue_token(db, key.client_id, key.client_secret, "client_credentials")
            except DomainError:
                return
            bought.append(issued.access_token)

    buyers = [threading.Thread(target=buy) for _ in range(4)]
    for thread in buyers:
        thread.start()
    start.wait()
    while not bought:
        time.sleep(0.001)
    revoke_key_by_id(db, key.client_id)
    for thread in buyers:
        thread.join()
    for token in bought:
        with pytest.raises(DomainError):
            authenticate_token(db, token)
    with db.read() as conn:
        left = conn.execute(
            select(access_tokens.c.token_hash).where(access_tokens.c.client_id == key.client_id)
        ).all()
    assert left == []
