"""Per-account webhook secrets (Standard Webhooks), with the previous one kept for a rotation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("webhook_secret", sa.String(64)))
        batch.add_column(sa.Column("webhook_secret_previous", sa.String(64)))
        batch.add_column(sa.Column("webhook_secret_rotated_at", sa.DateTime(timezone=True)))
    connection = op.get_bind()
    accounts = sa.table("accounts", sa.column("id", sa.Integer), sa.column("webhook_secret"))
    for (account_id,) in connection.execute(sa.select(accounts.c.id)).all():
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        connection.execute(
            sa.update(accounts).where(accounts.c.id == account_id).values(webhook_secret=secret)
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("webhook_secret_rotated_at")
        batch.drop_column("webhook_secret_previous")
        batch.drop_column("webhook_secret")
