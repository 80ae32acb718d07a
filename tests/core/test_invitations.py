"""Invitations in the core, on both databases: the list and its statuses, resend and revoke
(who may, what is voided, what is queued), the set-password link (single use, expiry, the
policy, a double submit accepted once) and the phone rule of addUser."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from learndir.core.accounts import AccountSpec
from learndir.core.actor import Actor
from learndir.core.auth import authenticate_credentials, authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.invitations import service as invitations
from learndir.core.invitations.service import InvitationStatus, LinkState
from learndir.core.users.changes import change_status
from learndir.db.engine import Database
from learndir.db.schema import accounts, outbox
from tests.invitations import invite_new_user, outbox_ids, send, send_latest
from tests.support import World, acme_spec, make_world

E = ErrorCode
PASSWORD = "Fresh-Pass-1"


@pytest.fixture(scope="module")
def w(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


def actor(w: World, login: str = "owner") -> Actor:
    return authenticate_token(w.db, w.token(login))


def statuses(w: World, user_id: str) -> list[InvitationStatus]:
    return [i.status for i in invitations.list_invitations(w.db, actor(w), user_id)]


def error_of(work: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        work()  # type: ignore[operator]
    return caught.value


def test_the_list_follows_the_message(w: World) -> None:
    user_id = invite_new_user(w)
    [queued] = invitations.list_invitations(w.db, actor(w), user_id)
    assert (queued.channel, queued.status, queued.attempts) == ("email", "queued", 0)
    assert queued.recipient.endswith("@acme.test") and queued.sent_at is None
    send(w.db, queued.id)
    [sent] = invitations.list_invitations(w.db, actor(w), user_id)
    assert sent.status is InvitationStatus.SENT and sent.sent_at is not None
    assert sent.expires_at is not None
    assert timedelta(days=6, hours=23) < sent.expires_at - sent.sent_at <= timedelta(days=7)
    with w.db.write() as conn:
        conn.execute(
            update(outbox).where(outbox.c.id == sent.id).values(status="failed", last_error="550")
        )
    [failed] = invitations.list_invitations(w.db, actor(w), user_id)
    assert (failed.status, failed.last_error) == (InvitationStatus.FAILED, "550")


def test_an_old_link_reads_expired(w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id, age=timedelta(days=8))
    assert statuses(w, user_id) == [InvitationStatus.EXPIRED]
    assert invitations.invitation_by_token(w.db, raw).state is LinkState.EXPIRED
    assert error_of(lambda: invitations.accept(w.db, raw, PASSWORD)).code is E.INVITATION_EXPIRED


def test_resend_voids_the_earlier_links_and_queues_a_new_message(w: World) -> None:
    user_id = invite_new_user(w)
    old_raw = send_latest(w.db, user_id)
    [new] = invitations.resend(w.db, actor(w), user_id)
    assert (new.channel, new.status) == ("email", InvitationStatus.QUEUED)
    assert statuses(w, user_id) == [InvitationStatus.QUEUED, InvitationStatus.REVOKED]
    assert invitations.invitation_by_token(w.db, old_raw).state is LinkState.REVOKED
    assert error_of(lambda: invitations.accept(w.db, old_raw, PASSWORD)).code is (
        E.INVITATION_REVOKED
    )
    # A second resend before the first went out: the queued one is never sent.
    invitations.resend(w.db, actor(w), user_id)
    with w.db.read() as conn:
        rows = conn.execute(
            select(outbox.c.status, outbox.c.message, outbox.c.password_link)
            .where(outbox.c.user_id == user_id)
            .order_by(outbox.c.created_at)
        ).all()
    assert [r.status for r in rows] == ["sent", "revoked", "pending"]
    assert {r.message for r in rows} == {"Welcome aboard"}
    assert all(r.password_link for r in rows)
    new_raw = send_latest(w.db, user_id)
    assert invitations.accept(w.db, new_raw, PASSWORD).state is LinkState.USED


def test_resend_on_another_channel_needs_its_address(w: World) -> None:
    user_id = invite_new_user(w, fields={"employee_id": "X-sms-1", "phone": "0049 30 1234567"})
    [sms] = invitations.resend(w.db, actor(w), user_id, "SMS")
    assert (sms.channel, sms.recipient) == ("sms", "+49301234567")
    # The account's default text when the channel never carried one.
    with w.db.read() as conn:
        message = conn.execute(select(outbox.c.message).where(outbox.c.id == sms.id)).scalar()
    assert message == "You have been invited to Acme."
    # Both channels of the latest invitation are resent together.
    bare = invite_new_user(w, fields={"employee_id": "X-sms-2"})
    error = error_of(lambda: invitations.resend(w.db, actor(w), bare, "sms"))
    assert (error.code, error.parameter) == (E.INVALID_PARAMETERS, "channel")
    error = error_of(lambda: invitations.resend(w.db, actor(w), bare, "fax"))
    assert (error.code, error.parameter) == (E.INVALID_PARAMETERS, "channel")
    assert statuses(w, bare) == [InvitationStatus.QUEUED]  # a rejected resend changes nothing


def test_resend_keeps_the_channels_of_the_latest_invitation(w: World) -> None:
    user_id = invite_new_user(
        w,
        fields={"employee_id": "X-both", "phone": "+1 202 555 0143"},
        sendLoginSMS=True,
        invitationSMSMessage="Hi by SMS",
    )
    resent = invitations.resend(w.db, actor(w), user_id)
    assert sorted((i.channel, i.recipient.startswith("+1")) for i in resent) == [
        ("email", False),
        ("sms", True),
    ]
    with w.db.read() as conn:
        texts = dict(
            conn.execute(
                select(outbox.c.channel, outbox.c.message).where(
                    outbox.c.id.in_([i.id for i in resent])
                )
            ).all()
        )
    assert texts == {"email": "Welcome aboard", "sms": "Hi by SMS"}


def test_who_may_see_resend_and_revoke(w: World) -> None:
    in_eng = invite_new_user(w, "eng")
    in_sales = invite_new_user(w, "sales-eu")
    sales_admin = actor(w, "sales.admin")
    for work in (
        lambda: invitations.list_invitations(w.db, sales_admin, in_eng),
        lambda: invitations.resend(w.db, sales_admin, in_eng),
        lambda: invitations.revoke(w.db, sales_admin, in_eng),
    ):
        error = error_of(work)
        assert (error.code, error.parameter) == (E.PERMISSION_DENIED, "userId")
    learner = actor(w, "jane.doe")
    assert error_of(lambda: invitations.resend(w.db, learner, in_sales)).code is (
        E.PERMISSION_DENIED
    )
    assert statuses(w, in_eng) == [InvitationStatus.QUEUED]
    assert len(invitations.resend(w.db, sales_admin, in_sales)) == 1
    error = error_of(
        lambda: invitations.resend(w.db, actor(w), "00000000-0000-0000-0000-000000000000")
    )
    assert (error.code, error.parameter) == (E.NOT_FOUND, "userId")


def test_revoke_and_inactive_users(w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    assert invitations.revoke(w.db, actor(w), user_id) == 1
    assert invitations.revoke(w.db, actor(w), user_id) == 0
    assert statuses(w, user_id) == [InvitationStatus.REVOKED]
    assert invitations.invitation_by_token(w.db, raw).state is LinkState.REVOKED

    leaver = invite_new_user(w)
    leaver_raw = send_latest(w.db, leaver)
    change_status(w.db, actor(w), [leaver], 3)
    error = error_of(lambda: invitations.resend(w.db, actor(w), leaver))
    assert (error.code, error.parameter) == (E.INVALID_PARAMETERS, "userId")
    assert invitations.invitation_by_token(w.db, leaver_raw).state is LinkState.REVOKED


def test_accepting_sets_the_password_once(w: World) -> None:
    user_id = invite_new_user(w)
    first = send(w.db, outbox_ids(w.db, user_id)[0])
    [second_message] = invitations.resend(w.db, actor(w), user_id)
    second = send(w.db, second_message.id)
    link = invitations.invitation_by_token(w.db, second)
    assert (link.state, link.account_name, link.password_min_length) == (
        LinkState.VALID,
        "Acme",
        8,
    )
    error = error_of(lambda: invitations.accept(w.db, second, "short"))
    assert (error.code, error.parameter, error.reason) == (
        E.INVALID_PARAMETERS,
        "password",
        "must be at least 8 characters long",
    )
    done = invitations.accept(w.db, second, PASSWORD)
    assert (done.state, done.login) == (LinkState.USED, link.login)
    me = authenticate_credentials(w.db, w.account_url, link.login, PASSWORD)
    assert me.user_id == user_id
    assert error_of(lambda: invitations.accept(w.db, second, PASSWORD)).code is E.INVITATION_USED
    assert error_of(lambda: invitations.accept(w.db, first, PASSWORD)).code is E.INVITATION_REVOKED
    assert statuses(w, user_id) == [InvitationStatus.ACCEPTED, InvitationStatus.REVOKED]
    unknown = error_of(lambda: invitations.invitation_by_token(w.db, "not-a-token"))
    assert unknown.code is E.NOT_FOUND
    # A user with a password gets no new link when invited again.
    invitations.resend(w.db, actor(w), user_id)
    with w.db.read() as conn:
        # first() closes the cursor: a half-read SQLite cursor would hold its snapshot.
        newest = (
            conn.execute(
                select(outbox.c.password_link)
                .where(outbox.c.user_id == user_id)
                .order_by(outbox.c.created_at.desc())
            )
            .scalars()
            .first()
        )
        assert newest is False


def test_a_double_submit_is_accepted_once(w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def submit(i: int) -> None:
        barrier.wait()
        try:
            invitations.accept(w.db, raw, f"{PASSWORD}-{i}")
            outcomes.append("accepted")
        except DomainError as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["accepted", *["invitation_used"] * 3]
    with w.db.read() as conn:
        accepted = conn.execute(
            select(outbox.c.accepted_at).where(outbox.c.user_id == user_id)
        ).scalars()
        assert len([a for a in accepted if a is not None]) == 1


@pytest.mark.parametrize(
    ("phone", "recipient"),
    [
        ("+49 30 1234567", "+49301234567"),
        ("0049 (30) 123-4567", "+49301234567"),
        ("+1 202.555.0143", "+12025550143"),
    ],
)
def test_add_user_sends_sms_to_the_e164_number(w: World, phone: str, recipient: str) -> None:
    user_id = invite_new_user(
        w,
        fields={"employee_id": f"P{phone}", "phone": phone},
        sendLoginEmail=False,
        sendLoginSMS=True,
        invitationSMSMessage="Hi",
    )
    [sms] = invitations.list_invitations(w.db, actor(w), user_id)
    assert (sms.channel, sms.recipient) == ("sms", recipient)


@pytest.mark.parametrize("phone", ["030 1234567", "+49 12", "+999 1234567"])
def test_add_user_refuses_an_sms_number_that_is_not_one(w: World, phone: str) -> None:
    before = w.snapshot()
    error = error_of(
        lambda: invite_new_user(
            w,
            fields={"employee_id": f"Q{phone}", "phone": phone},
            sendLoginSMS=True,
            invitationSMSMessage="Hi",
        )
    )
    assert (error.code, error.parameter) == (E.INVALID_PARAMETERS, "phone")
    assert w.snapshot() == before


def test_the_account_file_sets_the_lifetime(db: Database) -> None:
    world = make_world(db, acme_spec(seatLimit=None, invitationLifetimeDays=3))
    user_id = invite_new_user(world)
    send_latest(db, user_id, lifetime_days=3)
    with db.read() as conn:
        days = conn.execute(
            select(accounts.c.invitation_lifetime_days).where(accounts.c.id == world.account_id)
        ).scalar_one()
    assert days == 3
    with pytest.raises(DomainError) as caught:
        AccountSpec.parse(acme_spec(invitationLifetimeDays=0))
    assert caught.value.parameter == "invitationLifetimeDays"
