"""The relational schema, shared by SQLite and PostgreSQL.

Portable types only (UUIDs as 36-char strings, UTC timestamps), and a naming convention so
constraint and index names are identical on both databases.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    cast,
    false,
    func,
    literal_column,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)

accounts = Table(
    "accounts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("url", String(255), nullable=False),
    # Host and path, lower-cased, without scheme or trailing slash: what callers are matched on.
    Column("url_key", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("password_min_length", Integer, nullable=False, server_default="8"),
    # Bumped whenever the account's profile fields or roles change: caches key on it.
    Column("settings_version", Integer, nullable=False, server_default="1"),
    # The invitation e-mail's text when addUser asks for one without an invitationMessage.
    Column("invitation_message", Text, nullable=False),
    # How long a set-password link stays valid after its message is sent.
    Column("invitation_lifetime_days", Integer, nullable=False, server_default="7"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The seat limit and the number of active users, kept while the account has a limit: updated in
# the same transaction as every change of status, so the limit is one conditional UPDATE that
# serialises concurrent adds on this row. No foreign key points here: inserting a user share-
# locks the accounts row (its foreign key), which must not be the row every add updates.
# Whoever sets a limit recounts the active users first.
account_seats = Table(
    "account_seats",
    metadata,
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("seat_limit", Integer, nullable=True),
    Column("active_users", Integer, nullable=False, server_default="0"),
)

departments = Table(
    "departments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("parent_id", ID, ForeignKey("departments.id"), nullable=True),
    Column("name", String(255), nullable=False),
    Column("code", String(255), nullable=True),
    Column("code_key", String(255), nullable=True),
    # Materialised path "/<root id>/<child id>/.../<own id>/": subtree tests are prefix tests.
    Column("path", String(2048), nullable=False),
    # Subordination: who supervises. NULL type means "inherit" (from the department, then its
    # parents); "manual" names the supervisor; "no_supervisor" stops inheritance.
    Column("subordination_type", String(16), nullable=True),
    Column("supervisor_id", ID, nullable=True),
    Column("co_subordination_type", String(16), nullable=True),
    Column("co_supervisor_id", ID, nullable=True),
    UniqueConstraint("account_id", "code_key"),
    Index(None, "account_id", "path"),
    Index(None, "parent_id"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(255), nullable=False),
    # Smart groups: membership follows `rules` (JSON, the OpenAPI's SmartGroupRuleNodes) and is
    # recomputed whenever a user or the rules change; members cannot be set by hand.
    Column("is_smart", Boolean, nullable=False, server_default=false()),
    Column("rules", Text, nullable=True),
    Index(None, "account_id"),
)

roles = Table(
    "roles",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    # owner, account_administrator, department_administrator, course_author, publisher,
    # supervisor, learner, or custom.
    Column("kind", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    # Space-separated permission names; only meaningful for custom roles.
    Column("permissions", Text, nullable=False, server_default=""),
    Index(None, "account_id", "kind"),
)

profile_fields = Table(
    "profile_fields",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    # The public id: LOGIN, EMAIL, FIRST_NAME, ... or USER_DEFINED_FIELD<n>.
    Column("field_key", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("name_key", String(128), nullable=False),
    Column("label", String(255), nullable=False),
    Column("type", String(32), nullable=False),
    Column("is_builtin", Boolean, nullable=False),
    Column("is_required", Boolean, nullable=False),
    Column("is_unique", Boolean, nullable=False),
    Column("order_priority", Integer, nullable=False),
    UniqueConstraint("account_id", "name_key"),
    UniqueConstraint("account_id", "field_key"),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("department_id", ID, ForeignKey("departments.id"), nullable=False),
    Column("login", String(255), nullable=False),
    Column("login_key", String(255), nullable=False),
    Column("email", String(320), nullable=True),
    Column("email_key", String(320), nullable=True),
    Column("first_name", String(255), nullable=True),
    Column("last_name", String(255), nullable=True),
    Column("job_title", String(255), nullable=True),
    Column("phone", String(64), nullable=True),
    Column("password_hash", String(255), nullable=True),
    Column("status", Integer, nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("added_by", ID, nullable=True),
    Column("last_login_at", DateTime(timezone=True), nullable=True),
    # Scheduled status changes (UTC dates), carried out by the service once due.
    Column("deactivate_on", Date, nullable=True),
    Column("terminate_on", Date, nullable=True),
    # Subordination: who supervises. NULL type means "inherit" (from the department, then its
    # parents); "manual" names the supervisor; "no_supervisor" stops inheritance.
    Column("subordination_type", String(16), nullable=True),
    Column("supervisor_id", ID, nullable=True),
    Column("co_subordination_type", String(16), nullable=True),
    Column("co_supervisor_id", ID, nullable=True),
    # Work leave: one of the OpenAPI's WorkLeaveReason values, with its dates.
    Column("work_leave_reason", String(32), nullable=True),
    Column("work_leave_start", Date, nullable=True),
    Column("work_leave_end", Date, nullable=True),
    # Led by the key, so a lookup by login or e-mail fits this index and no other, whatever
    # the planner's statistics say (every other index of the table leads with account_id).
    UniqueConstraint("login_key", "account_id"),
    UniqueConstraint("email_key", "account_id"),
    # Users of a department, and its counts by status read from the index alone.
    Index(None, "department_id", "status"),
    # Keyset paging of an account's users by id.
    Index(None, "account_id", "id"),
    Index(None, "deactivate_on"),
    Index(None, "terminate_on"),
    # A department's users in id order (the console's people list).
    Index(None, "department_id", "id"),
)


def _in_account(expr: Any) -> Any:
    """`expr` behind its account's id: "<account_id>:<expr>"."""
    return users.c.account_id.op("||")(literal_column("':'")).op("||")(expr)


# The console's people list (core.users.search): a prefix of a login, an e-mail or a
# lower-cased name, and a status, each behind the account's id. A search compares these very
# expressions, which no other index holds, so even a planner without statistics reads one range
# of the index that fits (byte order on PostgreSQL, whatever the database's collation).
PEOPLE_KEYS: dict[str, Any] = {
    "login": _in_account(users.c.login_key),
    "email": _in_account(users.c.email_key),
    "first_name": _in_account(func.lower(users.c.first_name)),
    "last_name": _in_account(func.lower(users.c.last_name)),
    "status": _in_account(cast(users.c.status, Text)),
}
# As the migration creates it: PostgreSQL reports the cast as `status::text`, which alembic's
# comparison reads as the bare column.
Index("ix_users_status_key_id", _in_account(users.c.status).label("status_key"), users.c.id)
for _name, _expr in PEOPLE_KEYS.items():
    if _name != "status":
        Index(
            f"ix_users_{_name}_prefix",
            _expr.label(f"{_name}_prefix"),
            postgresql_ops={f"{_name}_prefix": "text_pattern_ops"},
        )

user_field_values = Table(
    "user_field_values",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("field_id", ID, ForeignKey("profile_fields.id"), primary_key=True),
    Column("value", Text, nullable=False),
    # Case-folded value for unique fields, NULL otherwise: the unique index below enforces
    # uniqueness per field (and so per account) while NULLs never collide.
    Column("unique_key", String(512), nullable=True),
    UniqueConstraint("field_id", "unique_key"),
)

user_roles = Table(
    "user_roles",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ID, ForeignKey("roles.id"), primary_key=True),
    Index(None, "role_id"),
)

user_role_departments = Table(
    "user_role_departments",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ID, ForeignKey("roles.id"), primary_key=True),
    Column("department_id", ID, ForeignKey("departments.id"), primary_key=True),
    Index(None, "department_id"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", ID, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "user_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("client_id", String(64), primary_key=True),
    # SHA-256 of the secret: secrets are 256 random bits, so a fast hash is not guessable.
    Column("secret_hash", String(64), nullable=False),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Set by revocation (the key's tokens are deleted in the same transaction); kept for the
    # audit trail and the key list.
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # When the key was last used: a token bought with it, or a request made with one (to the
    # minute).
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Index(None, "user_id"),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # The key the token was bought with: revoking the key deletes its tokens.
    Column(
        "client_id", String(64), ForeignKey("api_keys.client_id", ondelete="CASCADE"), nullable=True
    ),
    Column("created_at", DateTime(timezone=True), nullable=True),
    # Written at most once a minute per token, so a busy token costs no write per request.
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Index(None, "expires_at"),
    Index(None, "client_id"),
)

# One row per invitation message (e-mail or SMS), written in the transaction that asks for it
# and drained by the delivery worker. The row is also the invitation: its set-password token is
# minted when the message is sent (only the hash is kept) and consumed on acceptance.
outbox = Table(
    "outbox",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("message", Text, nullable=False),
    # pending -> sending (claimed) -> sent | failed; revoked before it was sent.
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    # The message carries a set-password link (no password was given).
    Column("password_link", Boolean, nullable=False, server_default=false()),
    # SHA-256 of the set-password token, minted when the message is sent.
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("accepted_at", DateTime(timezone=True), nullable=True),
    # Voided: revoked by an administrator, superseded by a resend, or another link was used.
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # When the current run of attempts began: retries stop 24 hours later. Cleared when an
    # administrator retries the message, so it gets a full day again.
    Column("first_attempt_at", DateTime(timezone=True), nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    # A claim is a lease: a worker that dies mid-send leaves the row to be claimed again.
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    # What the provider answered on acceptance (SMTP reply, the SMS gateway's message sid).
    Column("provider_id", String(255), nullable=True),
    Index(None, "status", "next_attempt_at"),
    Index(None, "user_id"),
)

# Webhook subscribers (the vendor's /webhook API) and, per subscriber, its delivery state:
# events are delivered in order, so retries and the lease are per subscriber, not per event.
webhook_subscribers = Table(
    "webhook_subscribers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("name_key", String(255), nullable=False),
    Column("callback_url", String(255), nullable=False),
    # The signing secret: HMAC and the vendor's hash need it itself, so it cannot be a hash.
    Column("secret", String(255), nullable=True),
    Column("confirmed", Boolean, nullable=False, server_default=false()),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("code_hash", String(64), nullable=True),
    Column("code_expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("failing_since", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_delivered_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("account_id", "name_key"),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column(
        "subscriber_id",
        ID,
        ForeignKey("webhook_subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("event_type", String(64), primary_key=True),
    # JSON list of {name, value} filters (the vendor's params; userIds).
    Column("params", Text, nullable=True),
)

# What happened, written in the transaction of the change; kept after delivery.
events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    # JSON, the event's data as documented in the README.
    Column("payload", Text, nullable=False),
    Index(None, "account_id", "occurred_at"),
)

# One row per event and subscriber that wants it; the id orders a subscriber's deliveries.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "subscriber_id",
        ID,
        ForeignKey("webhook_subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", ID, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    # pending -> sent | failed (kept; an administrator can replay it).
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Index(None, "subscriber_id", "status", "id"),
    Index(None, "event_id"),
)

# Failed sign-ins, counted per login (scope "login", subject "<account url key> <login key>")
# and per client address (scope "address"); a row whose count reached the threshold carries
# the time until which the subject is locked. In the database, so that every process and node
# sees the same counts.
signin_failures = Table(
    "signin_failures",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("subject", String(600), primary_key=True),
    # The account a login belongs to (None for addresses and for unknown accounts).
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True),
    Column("failures", Integer, nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Index(None, "account_id"),
)

# The audit trail: one row per change, written by core.changes.record in the change's own
# transaction. Actor and target ids are kept as text without foreign keys: the trail outlives
# the users, keys and departments it names.
audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    # Who: the acting user (None for the scheduler and the command line without a user) and the
    # credential used: "password", "key:<client id>", "token:<first 16 hex of its hash>", ...
    Column("actor_user_id", ID, nullable=True),
    Column("actor_login", String(255), nullable=True),
    Column("credential", String(128), nullable=True),
    # From where: soap, rest, scim, import, cli, console, invite, scheduler.
    Column("interface", String(16), nullable=False),
    Column("client_address", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    # What: the operation (a webhook event type, or an operation webhooks do not report), its
    # target, and JSON [{field, before, after}] of what changed (never a password or secret).
    Column("operation", String(64), nullable=False),
    Column("target_kind", String(32), nullable=False),
    Column("target_id", String(255), nullable=False),
    Column("changes", Text, nullable=False),
    Column("details", Text, nullable=True),
    Index(None, "account_id", "id"),
    Index(None, "account_id", "target_id"),
    # The filters by acting user and by operation, newest first (migration 0013).
    Index(None, "account_id", "actor_user_id", "id"),
    Index(None, "account_id", "operation", "id"),
    Index(None, "occurred_at"),
)


# Import jobs (bulk import and file sync): one row per run, from the command line or REST. A
# job is applied in batches, each one transaction that also moves `rows_done` on, so a job
# resumes after a crash at the first batch that did not commit. The worker that runs a REST job
# holds a lease on it, renewed every batch; a lease that runs out lets another worker go on.
import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # Who runs it (kept as text: the record outlives the user).
    Column("actor_user_id", ID, nullable=False),
    Column("actor_login", String(255), nullable=True),
    Column("interface", String(16), nullable=False),
    # create, update, upsert or sync; the column users are matched on (login, email or a
    # unique profile field's name); whether new users without a password are invited.
    Column("mode", String(16), nullable=False),
    Column("match_by", String(128), nullable=False),
    Column("invite", Boolean, nullable=False, server_default=false()),
    Column("dry_run", Boolean, nullable=False, server_default=false()),
    Column("file_name", String(255), nullable=False),
    Column("encoding", String(64), nullable=True),
    Column("delimiter", String(8), nullable=True),
    # JSON list of the file's headers, once read (the error report repeats them).
    Column("headers", Text, nullable=True),
    # queued -> running -> done | failed
    Column("status", String(16), nullable=False),
    # rows -> managers -> missing (sync) -> done: what the job does next.
    Column("phase", String(16), nullable=False),
    Column("rows_total", Integer, nullable=True),
    Column("rows_done", Integer, nullable=False, server_default="0"),
    # JSON {action: count}.
    Column("totals", Text, nullable=False),
    # Why a job failed as a whole (a file that is not a table, unknown columns).
    Column("failure", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Index(None, "status"),
    Index(None, "account_id", "created_at"),
)

# An uploaded file, in pieces of at most a megabyte, so that any node's worker can run the job
# and a restart loses nothing; deleted with the job.
import_chunks = Table(
    "import_chunks",
    metadata,
    Column("job_id", ID, ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# What became of each row of a job (the plan of a dry run, the report of a real one), and the
# users a sync deactivated. The match key lets a later batch find a user given twice in the
# file; user_id is every user the file names, which a sync does not deactivate.
import_results = Table(
    "import_results",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("job_id", ID, ForeignKey("import_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("row_number", Integer, nullable=True),
    # create, update, move, deactivate, unchanged or error.
    Column("action", String(16), nullable=False),
    Column("user_id", ID, nullable=True),
    Column("login", String(255), nullable=True),
    Column("match_key", String(512), nullable=True),
    Column("email_key", String(320), nullable=True),
    # The Manager login cell, set once every row is in (a manager may come later in the file).
    Column("manager", String(255), nullable=True),
    # JSON [{field, before, after}] of what the row changes.
    Column("changes", Text, nullable=True),
    Column("error", Text, nullable=True),
    # JSON list of the row's cells, for the error report.
    Column("cells", Text, nullable=True),
    # Only what is written in order, and the match key a later batch looks up: an index on
    # random keys (e-mail, user id) makes every batch write pages all over it. The match key's
    # index leads with the key, so a lookup by it fits this index and no other whatever the
    # planner's statistics say (see core.users.keys).
    Index(None, "job_id", "id"),
    Index(None, "match_key", "job_id"),
)


# Bearer tokens for SCIM provisioning (issue 12): long-lived, revocable, per account, acting as
# the user they were made for; only the token's SHA-256 is kept (256 random bits: a fast hash
# is not guessable). Revocation sets revoked_at, read on every request by every node.
scim_tokens = Table(
    "scim_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # To the minute, so a busy token costs no write per request.
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # Users the token creates are sent the account's invitation (see core.scim_tokens).
    Column("invite", Boolean, nullable=False, server_default=false()),
    Index(None, "account_id"),
    Index(None, "user_id"),
)


def _scim_resource(name: str, key: str, target: str) -> Table:
    """What a SCIM client sent for one resource beyond what learndir's model holds: the
    document as last written (read back merged with the current learndir values) and its
    externalId, by which identity providers look resources up."""
    return Table(
        name,
        metadata,
        Column(key, ID, ForeignKey(f"{target}.id", ondelete="CASCADE"), primary_key=True),
        Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        Column("external_id", String(255), nullable=True),
        Column("document", Text, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index(None, "account_id", "external_id"),
    )


scim_users = _scim_resource("scim_users", "user_id", "users")
scim_groups = _scim_resource("scim_groups", "group_id", "groups")

# A user's e-mail addresses beyond the one learndir holds (users.email), folded: a filter on
# emails.value is answered from indexes.
scim_user_emails = Table(
    "scim_user_emails",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("value_key", String(320), nullable=False),
    Index(None, "account_id", "value_key"),
    Index(None, "user_id"),
)

# The admin console's sessions (issue 13): the cookie carries 256 random bits, the row only
# their SHA-256. A session ends on sign-out, after LEARNDIR_CONSOLE_IDLE_MINUTES without a
# request (last_seen_at is written at most once a minute) or 12 hours after sign-in.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Index(None, "user_id"),
    Index(None, "last_seen_at"),
)
