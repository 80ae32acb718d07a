"""directory: schedules, subordination, work leave, smart groups

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 23:23:10.606021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("departments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subordination_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("supervisor_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("co_subordination_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("co_supervisor_id", sa.String(length=36), nullable=True))

    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_smart", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("rules", sa.Text(), nullable=True))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deactivate_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("terminate_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("subordination_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("supervisor_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("co_subordination_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("co_supervisor_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("work_leave_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("work_leave_start", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("work_leave_end", sa.Date(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_users_account_id_id"), ["account_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_users_deactivate_on"), ["deactivate_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_users_terminate_on"), ["terminate_on"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_terminate_on"))
        batch_op.drop_index(batch_op.f("ix_users_deactivate_on"))
        batch_op.drop_index(batch_op.f("ix_users_account_id_id"))
        batch_op.drop_column("work_leave_end")
        batch_op.drop_column("work_leave_start")
        batch_op.drop_column("work_leave_reason")
        batch_op.drop_column("co_supervisor_id")
        batch_op.drop_column("co_subordination_type")
        batch_op.drop_column("supervisor_id")
        batch_op.drop_column("subordination_type")
        batch_op.drop_column("terminate_on")
        batch_op.drop_column("deactivate_on")
        batch_op.drop_column("last_login_at")

    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.drop_column("rules")
        batch_op.drop_column("is_smart")

    with op.batch_alter_table("departments", schema=None) as batch_op:
        batch_op.drop_column("co_supervisor_id")
        batch_op.drop_column("co_subordination_type")
        batch_op.drop_column("supervisor_id")
        batch_op.drop_column("subordination_type")
