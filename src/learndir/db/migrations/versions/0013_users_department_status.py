"""Users by department and status: the console's counts (users by status in the overview, per
branch in the department tree) are answered from this index alone, department by department,
without reading the users' rows; it also serves every lookup the department_id index served

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 09:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_department_id_status", "users", ["department_id", "status"])
    op.drop_index("ix_users_department_id", table_name="users")


def downgrade() -> None:
    op.create_index("ix_users_department_id", "users", ["department_id"])
    op.drop_index("ix_users_department_id_status", table_name="users")
