"""Security and audit: API keys can be revoked and show when they were last used, tokens know
their key; failed sign-ins are counted; the audit trail

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 23:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.String(length=36)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("last_used_at", WHEN, nullable=True))
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("created_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("last_used_at", WHEN, nullable=True))
        batch_op.create_foreign_key(
            "fk_access_tokens_client_id_api_keys",
            "api_keys",
            ["client_id"],
            ["client_id"],
            ondelete="CASCADE",
        )
        batch_op.create_index("ix_access_tokens_client_id", ["client_id"], unique=False)

    op.create_table(
        "signin_failures",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=600), nullable=False),
        sa.Column("account_id", ID, nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", WHEN, nullable=False),
        sa.Column("last_failed_at", WHEN, nullable=False),
        sa.Column("locked_until", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_signin_failures_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scope", "subject", name="pk_signin_failures"),
    )
    op.create_index(
        "ix_signin_failures_account_id", "signin_failures", ["account_id"], unique=False
    )

    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("occurred_at", WHEN, nullable=False),
        sa.Column("actor_user_id", ID, nullable=True),
        sa.Column("actor_login", sa.String(length=255), nullable=True),
        sa.Column("credential", sa.String(length=128), nullable=True),
        sa.Column("interface", sa.String(length=16), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("target_kind", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=255), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_audit_log_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_account_id_id", "audit_log", ["account_id", "id"])
    op.create_index("ix_audit_log_account_id_target_id", "audit_log", ["account_id", "target_id"])
    op.create_index(
        "ix_audit_log_account_id_actor_user_id", "audit_log", ["account_id", "actor_user_id"]
    )
    op.create_index("ix_audit_log_occurred_at", "audit_log", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("signin_failures")
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_access_tokens_client_id")
        batch_op.drop_constraint("fk_access_tokens_client_id_api_keys", type_="foreignkey")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("created_at")
        batch_op.drop_column("client_id")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("revoked_at")
