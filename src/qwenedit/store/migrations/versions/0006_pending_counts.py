"""Every account keeps the count of its pending tasks and of the images they ask for, kept by
triggers on ``tasks``: the queue position shown at every create then reads one row per queued
account instead of scanning every pending task (which grew with the backlog). The index on
``(account_id, status)`` gains ``created_at``, so an account's oldest pending task and the
tasks queued after a given one are index range reads.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

# A task's ``n`` is read as ``task_stats`` reads it: the reserve is ``n`` times the price,
# CASE WHEN price_milli > 0 THEN reserved_milli / price_milli ELSE 1 END.

_BACKFILL = """
UPDATE accounts SET
    pending_tasks = (
        SELECT count(*) FROM tasks WHERE tasks.account_id = accounts.id AND tasks.status = 'pending'
    ),
    pending_images = (
        SELECT coalesce(sum(
            CASE WHEN price_milli > 0 THEN reserved_milli / price_milli ELSE 1 END
        ), 0)
        FROM tasks WHERE tasks.account_id = accounts.id AND tasks.status = 'pending'
    )
"""

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER tasks_pending_insert AFTER INSERT ON tasks WHEN new.status = 'pending'
    BEGIN
        UPDATE accounts SET pending_tasks = pending_tasks + 1, pending_images = pending_images
            + CASE WHEN new.price_milli > 0 THEN new.reserved_milli / new.price_milli ELSE 1 END
        WHERE id = new.account_id;
    END""",
    """CREATE TRIGGER tasks_pending_delete AFTER DELETE ON tasks WHEN old.status = 'pending'
    BEGIN
        UPDATE accounts SET pending_tasks = pending_tasks - 1, pending_images = pending_images
            - CASE WHEN old.price_milli > 0 THEN old.reserved_milli / old.price_milli ELSE 1 END
        WHERE id = old.account_id;
    END""",
    """CREATE TRIGGER tasks_pending_leave AFTER UPDATE OF status ON tasks
    WHEN old.status = 'pending' AND new.status <> 'pending'
    BEGIN
        UPDATE accounts SET pending_tasks = pending_tasks - 1, pending_images = pending_images
            - CASE WHEN old.price_milli > 0 THEN old.reserved_milli / old.price_milli ELSE 1 END
        WHERE id = old.account_id;
    END""",
    """CREATE TRIGGER tasks_pending_enter AFTER UPDATE OF status ON tasks
    WHEN old.status <> 'pending' AND new.status = 'pending'
    BEGIN
        UPDATE accounts SET pending_tasks = pending_tasks + 1, pending_images = pending_images
            + CASE WHEN new.price_milli > 0 THEN new.reserved_milli / new.price_milli ELSE 1 END
        WHERE id = new.account_id;
    END""",
]

_POSTGRES_FUNCTION = """
CREATE FUNCTION tasks_pending_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'pending' THEN
        UPDATE accounts SET pending_tasks = pending_tasks - 1, pending_images = pending_images
            - CASE WHEN OLD.price_milli > 0 THEN OLD.reserved_milli / OLD.price_milli ELSE 1 END
        WHERE id = OLD.account_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.status = 'pending' THEN
        UPDATE accounts SET pending_tasks = pending_tasks + 1, pending_images = pending_images
            + CASE WHEN NEW.price_milli > 0 THEN NEW.reserved_milli / NEW.price_milli ELSE 1 END
        WHERE id = NEW.account_id;
    END IF;
    RETURN NULL;
END
$$
"""

_POSTGRES_TRIGGERS = [
    "CREATE TRIGGER tasks_pending_insert AFTER INSERT ON tasks FOR EACH ROW "
    "WHEN (NEW.status = 'pending') EXECUTE FUNCTION tasks_pending_counts()",
    "CREATE TRIGGER tasks_pending_delete AFTER DELETE ON tasks FOR EACH ROW "
    "WHEN (OLD.status = 'pending') EXECUTE FUNCTION tasks_pending_counts()",
    "CREATE TRIGGER tasks_pending_update AFTER UPDATE OF status ON tasks FOR EACH ROW "
    "WHEN ((OLD.status = 'pending') <> (NEW.status = 'pending')) "
    "EXECUTE FUNCTION tasks_pending_counts()",
]


def upgrade() -> None:
    for name in ("pending_tasks", "pending_images"):
        op.add_column(
            "accounts", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
        )
    op.drop_index(op.f("ix_tasks_account_id_status"), table_name="tasks")
    op.create_index(
        op.f("ix_tasks_account_id_status_created_at"),
        "tasks",
        ["account_id", "status", "created_at"],
    )
    op.execute(_BACKFILL)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_FUNCTION)
        for statement in _POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    on_tasks = " ON tasks" if postgres else ""  # PostgreSQL names a trigger with its table
    for name in ("insert", "delete", "update", "leave", "enter"):
        op.execute(f"DROP TRIGGER IF EXISTS tasks_pending_{name}{on_tasks}")
    if postgres:
        op.execute("DROP FUNCTION tasks_pending_counts()")
    op.drop_index(op.f("ix_tasks_account_id_status_created_at"), table_name="tasks")
    op.create_index(op.f("ix_tasks_account_id_status"), "tasks", ["account_id", "status"])
    # plain DROP COLUMN (SQLite 3.35+): a batch rebuild of accounts would drop the table, and
    # with foreign keys on, that deletes the rows that refer to it (api keys, ...)
    for name in ("pending_images", "pending_tasks"):
        op.execute(f"ALTER TABLE accounts DROP COLUMN {name}")
