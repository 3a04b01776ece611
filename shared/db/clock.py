"""The database clock, to the millisecond, on SQLite and PostgreSQL alike.

Deadlines, leases and heartbeats are compared across processes and machines, so they are
taken from one clock: the database's. ``CURRENT_TIMESTAMP`` will not do on SQLite, where
it has whole seconds, and on PostgreSQL ``now()`` is frozen at the start of the
transaction. :func:`db_now` compiles to

* PostgreSQL: ``statement_timestamp() [+ make_interval(secs => offset)]``;
* SQLite: ``strftime('%Y-%m-%d %H:%M:%f', 'now'[, '+N.NNN seconds')) || '000'``, which is
  the text form :class:`shared.db.UtcDateTime` stores (naive UTC, six fractional digits),
  so it compares correctly with values written from Python.

Use it in statements (``values(deadline_at=db_now(60))``, ``where(X.lease_until < db_now())``);
it reads back as an aware UTC ``datetime``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from shared.db.base import UtcDateTime


class db_now(FunctionElement[Any]):  # noqa: N801 (reads as a SQL function)
    """The database's current time plus ``offset_s`` seconds (may be negative or a bind)."""

    type = UtcDateTime()
    inherit_cache = True

    def __init__(self, offset_s: float | Any = 0.0) -> None:
        offset = offset_s if hasattr(offset_s, "compile") else bindparam(None, float(offset_s), type_=Float())
        super().__init__(offset)


@compiles(db_now, "postgresql")
def _now_postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    offset = compiler.process(list(element.clauses)[0], **kw)
    return f"(statement_timestamp() + make_interval(secs => CAST({offset} AS DOUBLE PRECISION)))"


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    offset = compiler.process(list(element.clauses)[0], **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', {offset})) || '000')"
