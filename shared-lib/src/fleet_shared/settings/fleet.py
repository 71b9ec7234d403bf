"""Every setting a service process reads, in groups a tool can load on its own.

`FleetSettings` is the whole of it; a service adds its own settings by subclassing it. The
groups hold what a tool needs, with the same defaults and rules, and only the secrets it needs:
`ProcessSettings` (gunicorn's master reads it), `EventSettings`, `DatabaseSettings` and
`JwtSettings` have none; `ConnectionSettings` is where the database and broker are. The table
in docs/architecture.md lists every field (a unit test keeps the two in step).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import model_validator

from fleet_shared.settings.jwt import DEVELOPMENT_JWT_SECRET, check_jwt
from fleet_shared.settings.model import SettingsModel
from fleet_shared.settings.parsing import (
    DAY,
    HOUR,
    MILLISECOND,
    MINUTE,
    SECOND,
    AmqpUrl,
    Audiences,
    Development,
    Duration,
    Flag,
    Leeway,
    Milliseconds,
    NonNegativeInt,
    Port,
    PositiveInt,
    PostgresUrl,
    Secret,
    Text,
    WebUrl,
)

#: The broker of a developer's machine (docker compose, `fleetctl up`).
LOCAL_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class BaseFleetSettings(SettingsModel):
    """What every model of a service's settings starts from: production unless told."""

    fleet_env: Literal["production", "development"] = "production"

    @property
    def development(self) -> bool:
        return self.fleet_env == "development"


class ProcessSettings(BaseFleetSettings):
    """How a process runs and listens: all gunicorn's master needs, no secret among them."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    port: Port = 8000  # the api's
    bind_host: Text = "0.0.0.0"  # the api and the worker's probe port
    web_concurrency: PositiveInt = 2  # gunicorn workers
    gunicorn_threads: PositiveInt = 4  # threads per gunicorn worker
    graceful_timeout: PositiveInt = 20  # seconds to finish in-flight work on SIGTERM
    health_port: Port = 9000  # the worker's probes and metrics
    metrics_enabled: Flag = True
    # Where the processes of one api share their metrics. prometheus_client reads it itself
    # when first imported; `<svc> api` gives gunicorn one of its own when none is set.
    prometheus_multiproc_dir: Text | None = None


class EventSettings(BaseFleetSettings):
    """Where events go and how they are retried: what the queue tools need to name queues."""

    event_exchange: Text = "fleet.events"
    consumer_prefetch: PositiveInt = 50
    # One retry per delay, then the parking queue.
    event_retry_delays_ms: Milliseconds = (1000, 10000, 60000)
    # The longest pause between an idle relay's looks at the outbox.
    relay_idle_poll: Duration = 250 * MILLISECOND
    # An api process relays the events its own commits wrote at once (fleet_shared.events.
    # on_commit); off, they wait for the worker relay's next look at the outbox.
    publish_on_commit: Flag = True


class DatabaseSettings(BaseFleetSettings):
    """Pools, timeouts, migrations and retention: everything about the database but where it
    is, so a connection budget can be worked out from a deployment without its secrets."""

    db_pool_size: PositiveInt = 5  # engine connections per process (units of work)
    db_max_overflow: NonNegativeInt = 0  # opened beyond db_pool_size in a burst, closed after
    db_read_pool_size: PositiveInt = 5  # autocommit connections for single-statement reads
    db_pgbouncer: Flag = False  # DATABASE_URL leads to PgBouncer in transaction pooling
    db_connect_timeout: Duration = 5 * SECOND
    db_statement_timeout: Duration = 30 * SECOND
    db_lock_timeout: Duration = 5 * SECOND
    # A migration waits this long for another one of the service to finish ...
    migration_lock_wait: Duration = 5 * MINUTE
    # ... and each of its steps this long for a table lock.
    migration_lock_timeout: Duration = 10 * SECOND
    outbox_retention: Duration = 1 * HOUR  # sent rows
    inbox_retention: Duration = 7 * DAY  # applied event ids: the replay horizon
    idempotency_retention: Duration = 24 * HOUR  # an Idempotency-Key replays its response


class JwtSettings(BaseFleetSettings):
    """The claims a token must carry and how JWKS keys are fetched; the keys themselves are
    the service's (`FleetSettings`), so a tool minting tokens reads these without them."""

    jwt_issuer: Text | None = None  # when set, a token's iss must equal it
    jwt_audience: Audiences | None = None  # when set, a token's aud must name one of these
    jwt_leeway: Leeway = 30 * SECOND  # clock skew allowed on exp, nbf and iat
    jwt_jwks_refresh: Duration = 5 * MINUTE  # an unknown kid fetches the JWKS at most this often
    jwt_jwks_cache: Duration = 1 * HOUR  # fetched keys are fetched again after this long
    jwt_jwks_timeout: Duration = 5 * SECOND


class ConnectionSettings(BaseFleetSettings):
    """Where the service's database and broker are: what a tool checking a pod's service
    reaches (``fleetctl status``)."""

    database_url: Annotated[PostgresUrl, Development(
        "postgresql://{service}:{service}@127.0.0.1:5432/fleet_{service}")]
    broker_url: Annotated[AmqpUrl, Development(LOCAL_BROKER_URL)]
    # Migrations connect here, straight to PostgreSQL (default: database_url).
    migration_database_url: PostgresUrl | None = None


class FleetSettings(JwtSettings, DatabaseSettings, EventSettings, ProcessSettings,
                    ConnectionSettings):
    """Every setting a service process reads: the groups above, plus the keys its tokens are
    checked with, checked together with the claims."""

    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    jwt_secret: Annotated[Secret | None, Development(DEVELOPMENT_JWT_SECRET)] = None
    # HS256: the secret being rotated out, accepted for verification only.
    jwt_previous_secret: Secret | None = None
    jwt_public_key: Text | None = None  # RS256/ES256: a PEM public key, or ...
    jwt_jwks_url: WebUrl | None = None  # ... the identity provider's JWKS endpoint

    @model_validator(mode="after")
    def _jwt_settings_fit_together(self) -> Self:
        check_jwt(self.by_name())
        return self
