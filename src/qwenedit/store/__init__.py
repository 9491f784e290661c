"""The store: SQLAlchemy Core tables, Alembic migrations and the repositories, the only code
that writes SQL. The same code runs on SQLite (embedded) and PostgreSQL (scale-out); dialect
differences live in ``database.py`` and in the few statements that name them."""
