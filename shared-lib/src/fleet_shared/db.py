"""SQLAlchemy 2 engine per app, the unit of work, and the infrastructure tables.

Every service database holds the same three infrastructure tables beside its own: the outbox
(events waiting for the broker), the inbox (events already applied) and the idempotency keys of
`POST` requests. Their current shape is declared here once; each service's migrations create
and change them with the frozen steps in `fleet_shared.migrations`.

Every connection carries a connect, statement and lock timeout (settings `DB_*_TIMEOUT`), so
no request, handler or relay waits on the database without bound; `error_kind` sorts what goes
wrong into an outage (wait and try again), contention (retry at once) and a failure.

One process holds at most `max_connections(settings)` connections: the engine's pool
(``DB_POOL_SIZE`` + ``DB_MAX_OVERFLOW``) and the read pool (``DB_READ_POOL_SIZE``);
docs/architecture.md adds them up per pod and per service.

Through PgBouncer in transaction pooling mode (``DB_PGBOUNCER=true``) consecutive transactions
of one client run on different server connections, so nothing may live in the session: no
server-side prepared statements, and the timeouts travel with each transaction
(``SET LOCAL``) instead of the startup packet, which PgBouncer refuses (docs/architecture.md,
"Through PgBouncer").
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import ClientCursor
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from fleet_shared.settings import DatabaseSettings, FleetSettings, defaults

if TYPE_CHECKING:
    from fleet_shared.events.envelope import Event


def sql_timestamp(column: str) -> str:
    """SQL rendering a timestamptz exactly as `iso_timestamp` renders it in Python (UTC, six
    fractional digits), so timestamps built by the database and by the code compare equal."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


def iso_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def engine_url(database_url: str) -> str:
    """Use psycopg 3 whatever driver the URL names (plain postgresql:// included)."""
    scheme, _, rest = database_url.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme.startswith("postgresql") else database_url


_DEFAULTS = defaults(DatabaseSettings)


@dataclass(frozen=True)
class Timeouts:
    """Bounds on every database connection, in seconds (settings DB_*_TIMEOUT)."""

    connect: float = _DEFAULTS.db_connect_timeout
    statement: float = _DEFAULTS.db_statement_timeout
    lock: float = _DEFAULTS.db_lock_timeout

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> Timeouts:
        return cls(settings.db_connect_timeout, settings.db_statement_timeout,
                   settings.db_lock_timeout)

    def connect_args(self, pgbouncer: bool = False) -> dict[str, Any]:
        """psycopg connection parameters.

        Straight to PostgreSQL, the libpq ``options`` startup parameter makes the server apply
        the two timeouts to every statement of the session, at no cost per statement. PgBouncer
        refuses that parameter (or, told to ignore it, drops the timeouts silently), and in
        transaction pooling a statement prepared on one server connection is missing on the
        next, or already there under the same name for another client (psycopg prepares after
        5 runs; PgBouncer before 1.21 cannot keep track), so both are left out and
        `set_local` bounds each transaction instead.
        """
        args: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(self.connect)),  # libpq's minimum is 2 s
        }
        if pgbouncer:
            args["prepare_threshold"] = None
        else:
            args["options"] = (f"-c statement_timeout={self.statement_ms} "
                               f"-c lock_timeout={self.lock_ms}")
        return args

    @property
    def statement_ms(self) -> int:
        return round(self.statement * 1000)

    @property
    def lock_ms(self) -> int:
        return round(self.lock * 1000)

    def set_local(self) -> str:
        """The timeouts for the current transaction only: nothing outlives it on a server
        connection PgBouncer hands to another client next."""
        return (f"SET LOCAL statement_timeout = {self.statement_ms}; "
                f"SET LOCAL lock_timeout = {self.lock_ms}")


@dataclass(frozen=True)
class PoolSizes:
    """How many connections one process holds at most (settings DB_POOL_SIZE,
    DB_MAX_OVERFLOW, DB_READ_POOL_SIZE)."""

    engine: int = _DEFAULTS.db_pool_size
    overflow: int = _DEFAULTS.db_max_overflow
    read: int = _DEFAULTS.db_read_pool_size

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> PoolSizes:
        return cls(settings.db_pool_size, settings.db_max_overflow, settings.db_read_pool_size)

    @property
    def maximum(self) -> int:
        return self.engine + self.overflow + self.read


def max_connections(settings: DatabaseSettings) -> int:
    """The most PostgreSQL (or PgBouncer) connections one api or worker process opens:
    DB_POOL_SIZE + DB_MAX_OVERFLOW + DB_READ_POOL_SIZE. An api pod runs WEB_CONCURRENCY such
    processes (gunicorn's master holds none); a worker pod runs one. (A container's raw
    environment: ``max_connections(DatabaseSettings.load(environ))``.)"""
    return PoolSizes.from_settings(settings).maximum


def make_engine(database_url: str, pool_size: int = _DEFAULTS.db_pool_size,
                timeouts: Timeouts | None = None,
                *, max_overflow: int = _DEFAULTS.db_max_overflow,
                pgbouncer: bool = _DEFAULTS.db_pgbouncer, **kwargs: Any) -> Engine:
    timeouts = timeouts or Timeouts()
    engine = create_engine(
        engine_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,  # a dead connection fails one request; pinging costs every request
        pool_recycle=1800,
        connect_args=timeouts.connect_args(pgbouncer),
        **kwargs,
    )
    if pgbouncer:
        bounds = timeouts.set_local()

        @event.listens_for(engine, "begin")
        def bound_transaction(connection: Connection) -> None:
            # One more round trip per transaction, paid only through PgBouncer. Autocommit
            # connections (the readiness ping) have no transaction to bound.
            if not connection.connection.dbapi_connection.autocommit:  # type: ignore[union-attr]
                connection.exec_driver_sql(bounds)

    return engine


# --- what went wrong ------------------------------------------------------------------------

OUTAGE = "outage"  # the connection or the server is gone: wait with back-off, try again
CONTENTION = "contention"  # deadlock, serialization failure, lock timeout: retry soon
FAILURE = "failure"  # anything else: the work itself is at fault

_CONTENTION = frozenset({"40001", "40P01", "55P03"})
# Shutting down, crashed, starting up; too many connections, out of memory, disk full.
_OUTAGE = frozenset({"57P01", "57P02", "57P03", "53000", "53100", "53200", "53300"})


def error_kind(exc: BaseException) -> str:
    """OUTAGE, CONTENTION or FAILURE for an exception raised by SQLAlchemy or psycopg."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return OUTAGE
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, PoolTimeout):
        return OUTAGE
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:  # no answer from a server at all
            return OUTAGE if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) \
                else FAILURE
        if state in _CONTENTION:
            return CONTENTION
        if state.startswith("08") or state in _OUTAGE:
            return OUTAGE
    return FAILURE


class InfraBase(DeclarativeBase):
    metadata = MetaData()


class OutboxRow(InfraBase):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID)  # unique without an index
    type: Mapped[str] = mapped_column(String(200))
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A row the broker refused or could not route waits until next_attempt_at (back-off).
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),)


class InboxRow(InfraBase):
    __tablename__ = "inbox"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    type: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (Index("inbox_received_at", "received_at"),)  # pruning, oldest first


class IdempotencyRow(InfraBase):
    __tablename__ = "idempotency_keys"

    # The digest of token subject, method and path (http.idempotency.scope_digest): always 64
    # characters. The width is that of the releases that stored the scope itself, whose
    # replicas still write during a rollout (migration step 3).
    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # KEY_PATTERN: 1-200
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[Any] = mapped_column(JSONB, nullable=True)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)  # Location, ETag
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("idempotency_keys_created_at", "created_at"),)


def install_infrastructure(connection: Connection) -> None:
    """The current shape at once, for tests of the shared library (services migrate)."""
    InfraBase.metadata.create_all(connection)


_INSERT_OUTBOX = "INSERT INTO outbox (event_id, type, correlation_id, body) VALUES (%s, %s, %s, %s)"


class UnitOfWork:
    """One transaction: rolls back unless `commit()` was called.

    Events added with `publish()` are written to the outbox in the same transaction as the
    state change, so either both happen or neither does. Units of work nest: inside an outer
    block, `commit()` only flushes and the outermost block decides (the Idempotency-Key store
    uses this to save the response in the same transaction as the effect). Once a commit has
    written events, `after_publish` is called (the process's relay takes them to the broker
    at once instead of at its next look at the outbox).
    """

    session: Session

    def __init__(self, session_factory: Callable[[], Session],
                 after_publish: Callable[[], None] | None = None) -> None:
        self._session_factory = session_factory
        self._after_publish = after_publish
        self._depth = 0
        self._published = False

    def __enter__(self) -> UnitOfWork:
        if self._depth == 0:
            self.session = self._session_factory()
            self._published = False
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth:
            return
        try:
            self.session.rollback()
        finally:
            self.session.close()

    def publish(self, event: Event) -> None:
        # Written at once, in the current transaction or savepoint (a handler's events vanish
        # with its savepoint), on the driver connection: the ORM's flush machinery would cost
        # more than the write itself.
        connection = self.session.connection().connection.driver_connection
        assert connection is not None
        connection.execute(_INSERT_OUTBOX, (event.id, event.type, event.correlation_id,
                                            event.to_json()))
        self._published = True

    def commit(self) -> None:
        if self._depth > 1:
            self.session.flush()
            return
        self.session.commit()
        if self._published and self._after_publish is not None:
            self._published = False
            self._after_publish()

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] | Mapping[str, Any] | None
                = None) -> psycopg.Cursor[Any]:
        """Run one statement (psycopg ``%s`` / ``%(name)s`` parameters) in this unit's
        transaction, on its driver connection: the cheap way for handlers and services to write.

        ``session.execute(text(...))`` compiles, caches and wraps every statement and its result
        (in the consumer that cost more than the write's own round trip); here the statement
        goes to psycopg as it is, and psycopg prepares it on the server after a few runs.
        Pending ORM changes are flushed first, as ``session.execute`` would; what the statement
        changes is not seen by ORM objects already loaded. Returns psycopg's cursor (rows of a
        ``RETURNING``, ``rowcount``).
        """
        self.session.flush()
        connection = self.session.connection().connection.driver_connection
        assert connection is not None
        return connection.execute(sql, params)  # type: ignore[no-any-return]


class Database:
    """The engine and session factory of one app or worker, and a pool for hot reads.

    Writes go through SQLAlchemy sessions (units of work). Single-statement reads on the
    request path skip the ORM and even SQLAlchemy Core: on a psycopg pool of autocommit
    connections a read is one round trip (no BEGIN/ROLLBACK), server-side prepared after a
    few runs, and costs a quarter of what the same query costs through an engine connection.

    Through PgBouncer (`pgbouncer`) a read stays one round trip: the parameters are bound
    on the client and the statement goes out behind the transaction's timeouts as one
    multi-statement query, which PostgreSQL runs as one implicit transaction.
    """

    # Called after every commit that wrote outbox rows (see UnitOfWork): the process's relay,
    # if it runs one, wakes up. Must not block.
    after_publish: Callable[[], None] | None = None

    def __init__(self, database_url: str, pool_size: int = _DEFAULTS.db_pool_size,
                 timeouts: Timeouts | None = None, *,
                 max_overflow: int = _DEFAULTS.db_max_overflow,
                 read_pool_size: int | None = None,
                 pgbouncer: bool = _DEFAULTS.db_pgbouncer) -> None:
        timeouts = timeouts or Timeouts()
        self.engine = make_engine(database_url, pool_size, timeouts, max_overflow=max_overflow,
                                  pgbouncer=pgbouncer)
        self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._bounds = f"{timeouts.set_local()}; " if pgbouncer else ""
        extra: dict[str, Any] = {"cursor_factory": ClientCursor} if pgbouncer else {}
        self.read_pool = ConnectionPool(
            self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            min_size=1, max_size=read_pool_size or pool_size, timeout=timeouts.connect,
            open=True, kwargs={"autocommit": True, "row_factory": dict_row,
                               **timeouts.connect_args(pgbouncer), **extra},
        )

    @classmethod
    def from_settings(cls, settings: FleetSettings) -> Database:
        return cls(settings.database_url.get_secret_value(), settings.db_pool_size,
                   Timeouts.from_settings(settings), max_overflow=settings.db_max_overflow,
                   read_pool_size=settings.db_read_pool_size, pgbouncer=settings.db_pgbouncer)

    def read(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one read-only statement (psycopg `%(name)s` parameters) outside a transaction."""
        with self.read_pool.connection() as conn:
            return self.run(conn, sql, params).fetchall()

    def run(self, conn: psycopg.Connection[Any], sql: str,
            params: Mapping[str, Any] | None = None) -> psycopg.Cursor[Any]:
        """Run one statement on a read-pool connection as a transaction of its own, within the
        statement and lock timeouts; the cursor holds its rows and row count."""
        if not self._bounds:
            return conn.execute(sql, params)  # type: ignore[arg-type]
        cursor = conn.execute(self._bounds + sql, params)  # type: ignore[arg-type]
        while cursor.nextset():  # past the SET LOCAL results, to the statement's own
            pass
        return cursor

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.after_publish)

    def ping(self) -> None:
        with self.read_engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.read_pool.close()
        self.engine.dispose()
