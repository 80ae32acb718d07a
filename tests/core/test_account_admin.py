"""Account settings changed by an administrator, on SQLite and PostgreSQL: custom profile
fields, custom roles, the password policy, the invitation text and the console's SCIM tokens,
each checked, refused for a department administrator, and recorded in the audit trail."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from learndir.core import account_admin, scim_tokens, webhooks
from learndir.core.actor import Actor
from learndir.core.audit import acting_user_id, audit_query, read_audit
from learndir.core.auth import load_actor
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.profile_fields import list_fields
from learndir.core.roles import Permission, RoleKind, list_roles
from learndir.db.engine import Database
from learndir.db.schema import accounts
from tests.support import World, acme_spec, make_world


@pytest.fixture
def acme(db: Database) -> World:
    return make_world(db, acme_spec())


def _actor(world: World, login: str) -> Actor:
    with world.db.read() as conn:
        actor = load_actor(conn, world.users[login])
    assert actor is not None
    return actor


def _refused(parameter: str, call: object) -> DomainError:
    assert callable(call)
    with pytest.raises(DomainError) as caught:
        call()
    assert caught.value.code is ErrorCode.INVALID_PARAMETERS
    assert caught.value.parameter == parameter
    return caught.value


def _last(world: World, actor: Actor, operation: str) -> dict[str, object]:
    records, _ = read_audit(world.db, actor, audit_query(operation=operation, page_size=1))
    assert records, operation
    record = records[0]
    return {"actor": record.actor_user_id, "target": record.target_id, "changes": record.changes}


def test_custom_profile_field(acme: World) -> None:
    owner = _actor(acme, "owner")
    before = len(list_fields(acme.db, owner))
    _refused("name", lambda: account_admin.add_profile_field(acme.db, owner, "9x", "", "string"))
    _refused("name", lambda: account_admin.add_profile_field(acme.db, owner, "email", "", "string"))
    _refused("type", lambda: account_admin.add_profile_field(acme.db, owner, "badge", "", "colour"))
    _refused(
        "name", lambda: account_admin.add_profile_field(acme.db, owner, "employee_id", "", "string")
    )
    assert len(list_fields(acme.db, owner)) == before
    field = account_admin.add_profile_field(
        acme.db, owner, "badge", "Badge number", "string", True, True
    )
    assert (field.name, field.label, field.is_required, field.is_unique) == (
        "badge",
        "Badge number",
        True,
        True,
    )
    assert field.key.startswith("USER_DEFINED_FIELD")
    fresh = _actor(acme, "owner")
    assert fresh.account.settings_version > owner.account.settings_version
    assert any(f.name == "badge" for f in list_fields(acme.db, fresh))
    seen = _last(acme, fresh, "PROFILE_FIELD_DEFINED")
    assert seen["actor"] == owner.user_id and seen["target"] == field.key
    with pytest.raises(DomainError) as caught:
        account_admin.add_profile_field(acme.db, _actor(acme, "sales.admin"), "x1", "", "string")
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


def test_custom_role(acme: World) -> None:
    admin = _actor(acme, "admin")
    _refused("name", lambda: account_admin.add_custom_role(acme.db, admin, " ", ["view_users"]))
    _refused("permissions", lambda: account_admin.add_custom_role(acme.db, admin, "X", ["fly"]))
    _refused("name", lambda: account_admin.add_custom_role(acme.db, admin, "hr partner", []))
    role = account_admin.add_custom_role(
        acme.db, admin, "Report Reader", ["view_users", "view_reports"]
    )
    assert role.kind is RoleKind.CUSTOM
    assert role.permissions == {Permission.VIEW_USERS, Permission.VIEW_REPORTS}
    listed = {r.name: r for r in list_roles(acme.db, _actor(acme, "admin"))}
    assert listed["Report Reader"].permissions == role.permissions
    seen = _last(acme, admin, "ROLE_CREATED")
    assert seen["target"] == role.id
    with pytest.raises(DomainError) as caught:
        account_admin.add_custom_role(acme.db, _actor(acme, "sales.admin"), "Y", [])
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


def test_password_policy_and_invitation_text(acme: World) -> None:
    owner = _actor(acme, "owner")
    for bad in ("0", "257", "ten", "", "-3"):
        _refused(
            "minLength", lambda bad=bad: account_admin.set_password_policy(acme.db, owner, bad)
        )
    assert account_admin.set_password_policy(acme.db, owner, "12") == 12
    assert _actor(acme, "owner").account.password_min_length == 12
    seen = _last(acme, owner, "PASSWORD_POLICY_CHANGED")
    assert seen["changes"] == [{"field": "passwordMinLength", "before": 8, "after": 12}]
    _refused("invitationMessage", lambda: account_admin.set_invitation_message(acme.db, owner, " "))
    text = account_admin.set_invitation_message(acme.db, owner, "Welcome aboard.\r\nSee you.")
    assert text == "Welcome aboard.\nSee you."
    with acme.db.read() as conn:
        stored = conn.execute(
            select(accounts.c.invitation_message).where(accounts.c.id == acme.account_id)
        ).scalar_one()
    assert stored == text
    policy = account_admin.account_policy(acme.db, _actor(acme, "owner"))
    assert (policy.password_min_length, policy.invitation_message) == (12, text)
    assert _last(acme, owner, "INVITATION_TEXT_CHANGED")["target"] == acme.account_id
    with pytest.raises(DomainError) as caught:
        account_admin.set_password_policy(acme.db, _actor(acme, "sales.admin"), "9")
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


def test_scim_tokens_of_the_console(acme: World) -> None:
    owner = _actor(acme, "owner")
    made = scim_tokens.create_token_for_actor(acme.db, owner, invite=True)
    assert made.token.startswith("scim_") and made.invite
    caller = scim_tokens.authenticate_scim(acme.db, made.token)
    assert caller.actor.user_id == owner.user_id and caller.invite
    listed = scim_tokens.account_scim_tokens(acme.db, owner)
    assert [t.token_id for t in listed] == [made.token_id]
    other = make_world(acme.db, acme_spec())
    with pytest.raises(DomainError) as caught:
        scim_tokens.revoke_token_of_account(acme.db, _actor(other, "owner"), made.token_id)
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert scim_tokens.revoke_token_of_account(acme.db, owner, made.token_id) is True
    assert scim_tokens.revoke_token_of_account(acme.db, owner, made.token_id) is False
    with pytest.raises(DomainError) as caught:
        scim_tokens.authenticate_scim(acme.db, made.token)
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    revoked = _last(acme, owner, "SCIM_TOKEN_REVOKED")
    assert revoked["actor"] == owner.user_id and revoked["target"] == made.token_id
    assert _last(acme, owner, "SCIM_TOKEN_CREATED")["actor"] == owner.user_id
    with pytest.raises(DomainError) as caught:
        scim_tokens.create_token_for_actor(acme.db, _actor(acme, "sales.admin"))
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


def test_acting_user_filter(acme: World) -> None:
    owner = _actor(acme, "owner")
    assert acting_user_id(acme.db, owner, "OWNER") == owner.user_id
    assert acting_user_id(acme.db, owner, owner.user_id.upper()) == owner.user_id
    assert acting_user_id(acme.db, owner, "  ") is None
    _refused("user", lambda: acting_user_id(acme.db, owner, "nobody.here"))
    account_admin.set_password_policy(acme.db, owner, 9)
    records, _ = read_audit(
        acme.db, owner, audit_query(user_id=owner.user_id, operation="password_policy_changed")
    )
    assert len(records) == 1
    assert json.dumps(records[0].changes)


def test_subscribers_listed_with_their_subscriptions_and_backlog(acme: World) -> None:
    owner = _actor(acme, "owner")
    assert webhooks.account_subscribers(acme.db, owner) == []
    webhooks.register(acme.db, owner, "b-lms", "https://lms.example.com/hook", "s3cret")
    webhooks.register(acme.db, owner, "a-hr", "https://hr.example.com/hook", None)
    webhooks.subscribe(acme.db, owner, "b-lms", {"subscriptionType": "USER_UPDATED"})
    webhooks.subscribe(acme.db, owner, "b-lms", {"subscriptionType": "USER_DELETED"})
    webhooks.send_code(acme.db, owner, "a-hr")
    listed = webhooks.account_subscribers(acme.db, owner)
    assert [s.info.name for s in listed] == ["a-hr", "b-lms"]
    hr, lms = listed
    assert (hr.info.pending, hr.subscriptions) == (1, [])
    assert [s.type for s in lms.subscriptions] == ["USER_DELETED", "USER_UPDATED"]
    assert lms.info.has_secret and not lms.info.confirmed and lms.info.enabled
    other = make_world(acme.db, acme_spec())
    assert webhooks.account_subscribers(acme.db, _actor(other, "owner")) == []
    with pytest.raises(DomainError) as caught:
        webhooks.account_subscribers(acme.db, _actor(acme, "sales.admin"))
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
