"""Alembic's environment for the sweep store: migrations run on the connection the store hands
over (`config.attributes["connection"]`), inside its transaction."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from probe.store.models import Base

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
