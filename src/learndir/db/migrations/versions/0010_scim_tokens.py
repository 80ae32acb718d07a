"""SCIM provisioning tokens: long-lived, revocable bearer tokens per account

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 04:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.String(length=36)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scim_tokens",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_used_at", WHEN, nullable=True),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_scim_tokens_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_scim_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_scim_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_scim_tokens_token_hash"),
    )
    op.create_index("ix_scim_tokens_account_id", "scim_tokens", ["account_id"])
    op.create_index("ix_scim_tokens_user_id", "scim_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("scim_tokens")
