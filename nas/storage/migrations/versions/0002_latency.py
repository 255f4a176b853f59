"""latency: targets, measurements, latency_models

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "targets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_targets_name", "targets", ["name"])
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target_key", sa.String(200), sa.ForeignKey("targets.key", ondelete="CASCADE"), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="SET NULL")),
        sa.Column("median_ms", sa.Float),
        sa.Column("p90_ms", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("machine", sa.String(300)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_measurements_target_subject", "measurements", ["target_key", "subject"])
    op.create_index("ix_measurements_job_id", "measurements", ["job_id"])
    op.create_table(
        "latency_models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target_key", sa.String(200), sa.ForeignKey("targets.key", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("n_measurements", sa.Integer, nullable=False),
        sa.Column("info", sa.JSON),
        sa.Column("model", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_latency_models_target_key", "latency_models", ["target_key"])


def downgrade() -> None:
    op.drop_table("latency_models")
    op.drop_table("measurements")
    op.drop_table("targets")
