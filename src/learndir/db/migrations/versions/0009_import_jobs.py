"""Import jobs: bulk import and file sync run in batches, resumable; uploaded files in chunks;
what became of every row

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.String(length=36)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("actor_user_id", ID, nullable=False),
        sa.Column("actor_login", sa.String(length=255), nullable=True),
        sa.Column("interface", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("match_by", sa.String(length=128), nullable=False),
        sa.Column("invite", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("encoding", sa.String(length=64), nullable=True),
        sa.Column("delimiter", sa.String(length=8), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        sa.Column("rows_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("totals", sa.Text(), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_import_jobs_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_import_jobs"),
    )
    op.create_index("ix_import_jobs_status", "import_jobs", ["status"])
    op.create_index(
        "ix_import_jobs_account_id_created_at", "import_jobs", ["account_id", "created_at"]
    )
    op.create_table(
        "import_chunks",
        sa.Column("job_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_jobs.id"],
            name="fk_import_chunks_job_id_import_jobs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name="pk_import_chunks"),
    )
    op.create_table(
        "import_results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("login", sa.String(length=255), nullable=True),
        sa.Column("match_key", sa.String(length=512), nullable=True),
        sa.Column("email_key", sa.String(length=320), nullable=True),
        sa.Column("manager", sa.String(length=255), nullable=True),
        sa.Column("changes", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cells", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_jobs.id"],
            name="fk_import_results_job_id_import_jobs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_import_results"),
    )
    op.create_index("ix_import_results_job_id_id", "import_results", ["job_id", "id"])
    op.create_index("ix_import_results_match_key_job_id", "import_results", ["match_key", "job_id"])


def downgrade() -> None:
    op.drop_table("import_results")
    op.drop_table("import_chunks")
    op.drop_table("import_jobs")
