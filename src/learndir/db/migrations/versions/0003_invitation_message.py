"""accounts: the default invitation text

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 17:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invitation_message", sa.Text(), nullable=True))
    # Accounts made before this revision get the text new accounts get by default.
    op.execute(
        "UPDATE accounts SET invitation_message = 'You have been invited to ' || name || '.'"
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column("invitation_message", existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("invitation_message")
