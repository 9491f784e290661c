"""Initial schema: accounts, API keys, ledger, tasks, outbox, callback attempts, workers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("user_group", sa.String(64), nullable=False, server_default="default"),
        sa.Column("balance_milli", sa.BigInteger, nullable=False, server_default="0"),
        _time("created_at", nullable=False),
        _time("last_claimed_at"),
        sa.CheckConstraint("balance_milli >= 0", name=op.f("ck_accounts_balance_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        _time("created_at", nullable=False),
        _time("revoked_at"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_api_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_account_id"), "api_keys", ["account_id"])
    op.create_table(
        "ledger",
        sa.Column("id", BigId, nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("task_id", sa.String(64)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_milli", sa.BigInteger, nullable=False),
        sa.Column("note", sa.Text),
        _time("created_at", nullable=False),
        sa.CheckConstraint("kind IN ('grant', 'reserve', 'refund')", name=op.f("ck_ledger_kind")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_ledger_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger")),
        sa.UniqueConstraint("task_id", "kind", name=op.f("uq_ledger_task_id_kind")),
    )
    op.create_index(op.f("ix_ledger_account_id"), "ledger", ["account_id"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("user_group", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("price_milli", sa.BigInteger, nullable=False),
        sa.Column("reserved_milli", sa.BigInteger, nullable=False),
        sa.Column("used_milli", sa.BigInteger),
        sa.Column("worker_id", sa.String(200)),
        _time("lease_expires_at"),
        _time("created_at", nullable=False),
        _time("claimed_at"),
        _time("started_at"),
        _time("finished_at"),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("result_keys", sa.Text, nullable=False, server_default="[]"),
        sa.Column("actual_prompt", sa.Text),
        sa.Column("engine_seconds", sa.Float),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed')",
            name=op.f("ck_tasks_status"),
        ),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name=op.f("ck_tasks_progress")),
        sa.CheckConstraint(
            "used_milli IS NULL OR used_milli BETWEEN 0 AND reserved_milli",
            name=op.f("ck_tasks_used"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_tasks_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_status_created_at"), "tasks", ["status", "created_at"])
    op.create_index(op.f("ix_tasks_account_id_status"), "tasks", ["account_id", "status"])
    op.create_index(
        op.f("ix_tasks_status_lease_expires_at"), "tasks", ["status", "lease_expires_at"]
    )
    op.create_index(op.f("ix_tasks_status_finished_at"), "tasks", ["status", "finished_at"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        _time("created_at", nullable=False),
        _time("next_attempt_at", nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        _time("delivered_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name=op.f("ck_outbox_status")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_outbox_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_outbox_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_task_id"), "outbox", ["task_id"])
    op.create_index(
        op.f("ix_outbox_status_next_attempt_at"), "outbox", ["status", "next_attempt_at"]
    )
    op.create_table(
        "callback_attempts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("outbox_id", BigId, nullable=False),
        _time("attempted_at", nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("duration_ms", sa.Integer),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox.id"],
            name=op.f("fk_callback_attempts_outbox_id_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    op.create_index(op.f("ix_callback_attempts_outbox_id"), "callback_attempts", ["outbox_id"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("engine", sa.String(64), nullable=False),
        _time("started_at", nullable=False),
        _time("last_beat_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(op.f("ix_workers_last_beat_at"), "workers", ["last_beat_at"])


def downgrade() -> None:
    for table in ("workers", "callback_attempts", "outbox", "tasks", "ledger", "api_keys"):
        op.drop_table(table)
    op.drop_table("accounts")
