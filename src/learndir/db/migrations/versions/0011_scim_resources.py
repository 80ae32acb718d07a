"""SCIM resources: what identity providers send that learndir's model does not hold, and
whether a SCIM token's new users are invited

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.String(length=36)
WHEN = sa.DateTime(timezone=True)


def _owned_by(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.add_column(
        "scim_tokens",
        sa.Column("invite", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    for table, key, target in (
        ("scim_users", "user_id", "users"),
        ("scim_groups", "group_id", "groups"),
    ):
        op.create_table(
            table,
            sa.Column(key, ID, nullable=False),
            sa.Column("account_id", ID, nullable=False),
            sa.Column("external_id", sa.String(length=255), nullable=True),
            sa.Column("document", sa.Text(), nullable=False),
            sa.Column("updated_at", WHEN, nullable=False),
            _owned_by(table, key, target),
            _owned_by(table, "account_id", "accounts"),
            sa.PrimaryKeyConstraint(key, name=f"pk_{table}"),
        )
        op.create_index(f"ix_{table}_account_id_external_id", table, ["account_id", "external_id"])
    op.create_table(
        "scim_user_emails",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("value_key", sa.String(length=320), nullable=False),
        _owned_by("scim_user_emails", "user_id", "users"),
        _owned_by("scim_user_emails", "account_id", "accounts"),
    )
    op.create_index(
        "ix_scim_user_emails_account_id_value_key", "scim_user_emails", ["account_id", "value_key"]
    )
    op.create_index("ix_scim_user_emails_user_id", "scim_user_emails", ["user_id"])


def downgrade() -> None:
    op.drop_table("scim_user_emails")
    op.drop_table("scim_groups")
    op.drop_table("scim_users")
    op.drop_column("scim_tokens", "invite")
