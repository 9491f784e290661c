"""The schema as SQLAlchemy Core tables. Migrations create it; tests prove the two agree.

Money is integer milli-credits. Every timestamp is timezone-aware UTC (``UtcDateTime``). Task
parameters and result keys are JSON text, so one schema serves SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC in and out. SQLite keeps no zone, so values are stored as UTC and the zone is
    put back on the way out; PostgreSQL stores ``timestamptz``."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC one")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("user_group", String(64), nullable=False, server_default="default"),
    Column("balance_milli", BigInteger, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_claimed_at", UtcDateTime),  # fair claims: round-robin by account
    # kept by triggers on tasks (migration 0006): the account's queue without a scan
    Column("pending_tasks", BigInteger, nullable=False, server_default="0"),
    Column("pending_images", BigInteger, nullable=False, server_default="0"),
    Column("webhook_secret", String(64)),
    Column("webhook_secret_previous", String(64)),
    Column("webhook_secret_rotated_at", UtcDateTime),
    CheckConstraint("balance_milli >= 0", name="balance_not_negative"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column(
        "account_id",
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False, index=True),
    Column("task_id", String(64)),  # plain text, no FK: purging tasks never changes a sum
    Column("kind", String(16), nullable=False),
    Column("amount_milli", BigInteger, nullable=False),
    Column("note", Text),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('grant', 'reserve', 'refund')", name="kind"),
    # NULLs are distinct, so grants repeat freely while a task's hold is resolved at most once.
    UniqueConstraint("task_id", "kind"),
)

TASK_STATUSES = "status IN ('pending', 'processing', 'completed', 'failed')"

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("user_group", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("params", Text, nullable=False),
    Column("price_milli", BigInteger, nullable=False),
    Column("reserved_milli", BigInteger, nullable=False),
    Column("used_milli", BigInteger),
    Column("worker_id", String(200)),
    Column("lease_expires_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("result_keys", Text, nullable=False, server_default="[]"),
    Column("actual_prompt", Text),
    Column("engine_seconds", Float),
    CheckConstraint(TASK_STATUSES, name="status"),
    CheckConstraint("progress BETWEEN 0 AND 100", name="progress"),
    CheckConstraint("used_milli IS NULL OR used_milli BETWEEN 0 AND reserved_milli", name="used"),
    Index(None, "status", "created_at"),
    Index(None, "account_id", "status", "created_at"),
    Index(None, "status", "lease_expires_at"),
    Index(None, "status", "finished_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("task_id", ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("delivered_at", UtcDateTime),
    CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
    Index(None, "status", "next_attempt_at"),
)

callback_attempts = Table(
    "callback_attempts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("outbox_id", ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("attempted_at", UtcDateTime, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("engine", String(64), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("last_beat_at", UtcDateTime, nullable=False, index=True),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("task_id", ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False, index=True),
)

files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("blob_key", String(200), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("mime_type", String(32), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
)
