"""The acting user of a command line command: by login or e-mail in an account found by its
URL, or the account's owner; unknown accounts and users are named."""

from __future__ import annotations

import pytest

from learndir.core.auth import actor_for_login, authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.roles import RoleKind
from learndir.core.users.changes import change_status
from learndir.db.engine import Database
from tests.support import acme_spec, make_world


def test_the_user_by_login_or_email_or_the_owner(db: Database) -> None:
    w = make_world(db, acme_spec())
    by_login = actor_for_login(db, w.account_url, "Sales.Admin")
    assert by_login.user_id == w.users["sales.admin"]
    assert by_login.account_id == w.account_id
    assert [g.role.kind for g in by_login.grants] == [RoleKind.DEPARTMENT_ADMINISTRATOR]
    by_email = actor_for_login(db, w.account_url.upper() + "/", "ADMIN@acme.test")
    assert by_email.user_id == w.users["admin"]
    owner = actor_for_login(db, w.account_url, None)
    assert owner.login == "owner"
    assert owner.administers_account


def test_unknown_accounts_and_users_are_named(db: Database) -> None:
    w = make_world(db, acme_spec())
    with pytest.raises(DomainError) as caught:
        actor_for_login(db, "http://nowhere.learn.test", None)
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert "nowhere.learn.test" in caught.value.describe()
    with pytest.raises(DomainError) as caught:
        actor_for_login(db, w.account_url, "nobody")
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert "'nobody'" in caught.value.describe()
    owner = authenticate_token(db, w.token("owner"))
    change_status(db, owner, [w.users["jane.doe"]], 3)
    with pytest.raises(DomainError) as caught:
        actor_for_login(db, w.account_url, "jane.doe")
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
