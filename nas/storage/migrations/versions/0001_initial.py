"""initial schema: jobs, architectures, trials, job_rounds, job_logs

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("budget", sa.Integer, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("n_evaluations", sa.Integer, nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("hypervolume", sa.Float),
        sa.Column("owner", sa.String(200)),
        sa.Column("heartbeat_at", TS),
        sa.Column("strategy_state", sa.LargeBinary),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "architectures",
        sa.Column("arch_id", sa.String(32), primary_key=True),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("space_version", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_architectures_space", "architectures", ["space"])
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("arch_id", sa.String(32), sa.ForeignKey("architectures.arch_id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("values", sa.JSON),
        sa.Column("metrics", sa.JSON),
        sa.Column("constraints", sa.JSON),
        sa.Column("feasible", sa.Boolean, nullable=False),
        sa.Column("source", sa.JSON),
        sa.Column("sampler", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("duration_s", sa.Float),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("job_id", "number", name="uq_trials_job_number"),
    )
    op.create_index("ix_trials_job_state", "trials", ["job_id", "state"])
    op.create_table(
        "job_rounds",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("n_evaluations", sa.Integer, nullable=False),
        sa.Column("n_screened", sa.Integer, nullable=False),
        sa.Column("hypervolume", sa.Float),
        sa.Column("best", sa.JSON),
        sa.Column("info", sa.JSON),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "job_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_job_logs_job_id", "job_logs", ["job_id"])


def downgrade() -> None:
    for t in ("job_logs", "job_rounds", "trials", "architectures", "jobs"):
        op.drop_table(t)
