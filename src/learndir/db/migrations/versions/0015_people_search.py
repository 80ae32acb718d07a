"""The console's people list: a department's users in id order, and prefix searches of logins,
e-mails, first and last names and lookups by status, each keyed by an expression behind the
account's id (see schema.PEOPLE_KEYS), in byte order on PostgreSQL so that a prefix is one
index range whatever the database's collation

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_PREFIXES = {
    "login": "login_key",
    "email": "email_key",
    "first_name": "lower(first_name)",
    "last_name": "lower(last_name)",
}


def upgrade() -> None:
    op.create_index("ix_users_department_id_id", "users", ["department_id", "id"])
    postgresql = op.get_bind().dialect.name == "postgresql"
    ops = " text_pattern_ops" if postgresql else ""
    for name, expression in _PREFIXES.items():
        op.execute(
            f"CREATE INDEX ix_users_{name}_prefix ON users "
            f"((account_id || ':' || {expression}){ops})"
        )
    op.execute(
        "CREATE INDEX ix_users_status_key_id ON users "
        "((account_id || ':' || CAST(status AS TEXT)), id)"
    )


def downgrade() -> None:
    op.drop_index("ix_users_status_key_id", table_name="users")
    for name in reversed(_PREFIXES):
        op.drop_index(f"ix_users_{name}_prefix", table_name="users")
    op.drop_index("ix_users_department_id_id", table_name="users")
