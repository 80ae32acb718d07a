"""The console's people list: users by status and by department in id order, and prefix searches of logins,
e-mails, first and last names (byte order on PostgreSQL, so that a prefix is one index range
whatever the database's collation)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_account_id_status_id", "users", ["account_id", "status", "id"])
    op.create_index("ix_users_department_id_id", "users", ["department_id", "id"])
    for column in ("login_key", "email_key"):
        name = column.removesuffix("_key")
        op.create_index(
            f"ix_users_account_id_{name}_prefix",
            "users",
            ["account_id", column],
            postgresql_ops={column: "text_pattern_ops"},
        )
    for column in ("first_name", "last_name"):
        op.create_index(
            f"ix_users_account_id_{column}_prefix",
            "users",
            [sa.column("account_id"), sa.func.lower(sa.column(column)).label(f"{column}_lower")],
            postgresql_ops={f"{column}_lower": "text_pattern_ops"},
        )


def downgrade() -> None:
    for name in ("last_name", "first_name", "email", "login"):
        op.drop_index(f"ix_users_account_id_{name}_prefix", table_name="users")
    op.drop_index("ix_users_department_id_id", table_name="users")
    op.drop_index("ix_users_account_id_status_id", table_name="users")
