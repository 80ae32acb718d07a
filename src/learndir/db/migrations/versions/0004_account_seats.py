"""account_seats: the seat limit and its counter, off the accounts row

Every addUser's foreign keys share-lock the accounts row; updating a counter on that row made
concurrent adds queue on each other and pile up multixacts. The counter now lives in a table
no foreign key points at.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_seats",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("seat_limit", sa.Integer(), nullable=True),
        sa.Column("active_users", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_seats_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_seats")),
    )
    op.execute(
        "INSERT INTO account_seats (account_id, seat_limit, active_users) "
        "SELECT id, seat_limit, (SELECT count(*) FROM users "
        "WHERE users.account_id = accounts.id AND users.status = 1) FROM accounts"
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("active_users")
        batch_op.drop_column("seat_limit")


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seat_limit", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("active_users", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE accounts SET seat_limit = (SELECT seat_limit FROM account_seats "
        "WHERE account_seats.account_id = accounts.id), active_users = (SELECT active_users "
        "FROM account_seats WHERE account_seats.account_id = accounts.id)"
    )
    op.drop_table("account_seats")
