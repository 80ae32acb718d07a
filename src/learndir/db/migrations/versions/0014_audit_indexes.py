"""The audit trail filtered by operation or by acting user, newest first, without scanning or
sorting the account's trail: indexes on (account_id, operation, id) and (account_id,
actor_user_id, id), the latter replacing (account_id, actor_user_id)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 09:05:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_audit_log_account_id_operation_id", "audit_log", ["account_id", "operation", "id"]
    )
    op.create_index(
        "ix_audit_log_account_id_actor_user_id_id",
        "audit_log",
        ["account_id", "actor_user_id", "id"],
    )
    op.drop_index("ix_audit_log_account_id_actor_user_id", table_name="audit_log")


def downgrade() -> None:
    op.create_index(
        "ix_audit_log_account_id_actor_user_id", "audit_log", ["account_id", "actor_user_id"]
    )
    op.drop_index("ix_audit_log_account_id_actor_user_id_id", table_name="audit_log")
    op.drop_index("ix_audit_log_account_id_operation_id", table_name="audit_log")
