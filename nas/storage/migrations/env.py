"""Alembic environment: run programmatically by ``Store.upgrade`` with a connection in ``config.attributes``."""

from alembic import context
from sqlalchemy import create_engine

from nas.storage.models import Base

VERSION_TABLE = "nas_alembic_version"  # our own, so Optuna's (or anyone's) alembic table is untouched

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      render_as_batch=conn.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic -x url=...` from a shell
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        _run(conn)
