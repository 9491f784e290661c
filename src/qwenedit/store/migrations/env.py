"""Alembic environment: runs on the connection ``qwenedit.store.migrate`` passes in, inside its
transaction (there is no alembic.ini and no engine of our own here)."""

from __future__ import annotations

from alembic import context

from qwenedit.store.tables import metadata

connection = context.config.attributes["connection"]
if connection is None:
    raise RuntimeError("run migrations through qwenedit.store.migrate (qwenedit db upgrade)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
