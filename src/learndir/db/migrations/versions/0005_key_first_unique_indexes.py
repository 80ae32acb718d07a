"""users: the unique indexes lead with the login and e-mail keys

Every other index of users leads with account_id too, and on tables whose statistics were
never gathered PostgreSQL costs them all alike, so a lookup by login could be answered by
scanning the account's users. Led by the key, the unique index is the only one that fits a
lookup by key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 21:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_KEYS = ("login_key", "email_key")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        for key in _KEYS:
            batch_op.drop_constraint(f"uq_users_account_id_{key}", type_="unique")
            batch_op.create_unique_constraint(f"uq_users_{key}_account_id", [key, "account_id"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        for key in _KEYS:
            batch_op.drop_constraint(f"uq_users_{key}_account_id", type_="unique")
            batch_op.create_unique_constraint(f"uq_users_account_id_{key}", ["account_id", key])
