"""The typed settings model: types, defaults, development defaults, secrets, and every refusal
as one line naming the environment variable."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from fleet_shared.settings import (
    DAY,
    DEVELOPMENT_JWT_SECRET,
    HOUR,
    MINUTE,
    BaseFleetSettings,
    ConfigError,
    ConnectionSettings,
    DatabaseSettings,
    Development,
    Duration,
    EventSettings,
    FleetSettings,
    JwtSettings,
    PositiveInt,
    PostgresUrl,
    ProcessSettings,
    Secret,
    SettingsModel,
    Text,
    defaults,
    format_duration,
)

SECRET = "s" * 32
PROD = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F",
        "JWT_SECRET": SECRET}
JWKS = {**PROD, "JWT_SECRET": "", "JWT_ALGORITHM": "RS256",
        "JWT_JWKS_URL": "https://idp.example/jwks", "JWT_ISSUER": "https://idp.example/",
        "JWT_AUDIENCE": "fleet-api"}


class ShippingLike(FleetSettings):
    """A service's own settings, declared as the services declare theirs."""

    saga_deadline: Duration = 3 * MINUTE
    saga_max_requests: PositiveInt = 3
    partner_url: Annotated[PostgresUrl, Development("postgresql://{service}@127.0.0.1/p")]
    partner_token: Secret | None = None


def load(**env: str) -> FleetSettings:
    return FleetSettings.load({**PROD, **env}, service="inventory")


def refusal(model: type[BaseFleetSettings], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        model.load(env, service="inventory")
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- types and production defaults ------------------------------------------------------------

def test_production_defaults_are_typed_values() -> None:
    settings = load()
    assert settings.fleet_env == "production" and not settings.development
    assert (settings.port, settings.health_port, settings.bind_host) == (8000, 9000, "0.0.0.0")
    assert (settings.web_concurrency, settings.gunicorn_threads,
            settings.graceful_timeout) == (2, 4, 20)
    assert settings.log_level == "INFO" and settings.metrics_enabled is True
    assert settings.event_exchange == "fleet.events" and settings.consumer_prefetch == 50
    assert settings.event_retry_delays_ms == (1000, 10000, 60000)
    assert settings.relay_idle_poll == 0.25
    assert (settings.db_pool_size, settings.db_max_overflow, settings.db_read_pool_size) \
        == (5, 0, 5)
    assert settings.db_pgbouncer is False
    assert (settings.db_connect_timeout, settings.db_statement_timeout,
            settings.db_lock_timeout) == (5.0, 30.0, 5.0)
    assert (settings.migration_lock_wait, settings.migration_lock_timeout) == (300.0, 10.0)
    assert (settings.outbox_retention, settings.inbox_retention,
            settings.idempotency_retention) == (HOUR, 7 * DAY, 24 * HOUR)
    assert settings.jwt_algorithm == "HS256"
    assert (settings.jwt_leeway, settings.jwt_jwks_refresh, settings.jwt_jwks_cache,
            settings.jwt_jwks_timeout) == (30.0, 300.0, 3600.0, 5.0)
    assert settings.jwt_issuer is None and settings.jwt_audience is None
    assert settings.jwt_previous_secret is None and settings.migration_database_url is None
    assert settings.jwt_public_key is None and settings.jwt_jwks_url is None


def test_values_from_the_environment_are_parsed_into_their_types() -> None:
    settings = load(PORT="9001", EVENT_RETRY_DELAYS_MS="5, 10", DB_PGBOUNCER="TRUE",
                    METRICS_ENABLED="0", LOG_LEVEL="DEBUG", DB_MAX_OVERFLOW="0",
                    JWT_ISSUER="https://idp/", JWT_AUDIENCE="a, b,", BIND_HOST="::")
    assert settings.port == 9001 and isinstance(settings.port, int)
    assert settings.event_retry_delays_ms == (5, 10)
    assert settings.db_pgbouncer is True and settings.metrics_enabled is False
    assert settings.log_level == "DEBUG" and settings.db_max_overflow == 0
    assert settings.jwt_issuer == "https://idp/" and settings.jwt_audience == ("a", "b")
    assert settings.bind_host == "::"


@pytest.mark.parametrize(("raw", "seconds"), [("250ms", 0.25), ("30s", 30), ("5m", 300),
                                              ("24h", 86400), ("7d", 604800), (" 2 s ", 2)])
def test_durations_carry_their_unit_and_are_seconds(raw: str, seconds: float) -> None:
    settings = load(DB_LOCK_TIMEOUT=raw)
    assert settings.db_lock_timeout == seconds and isinstance(settings.db_lock_timeout, float)


@pytest.mark.parametrize("seconds", [0.25, 1, 30, 300, 3600, 86400, 7 * 86400, 90, 1.5])
def test_a_formatted_duration_reads_back_as_the_same_seconds(seconds: float) -> None:
    settings = load(OUTBOX_RETENTION=format_duration(seconds))
    assert settings.outbox_retention == seconds


def test_an_empty_variable_counts_as_unset() -> None:
    settings = load(PORT="", JWT_ISSUER="", MIGRATION_DATABASE_URL="")
    assert settings.port == 8000 and settings.jwt_issuer is None
    assert settings.migration_database_url is None
    assert refusal(FleetSettings, {**PROD, "DATABASE_URL": ""}) \
        == "DATABASE_URL is required but not set"


def test_names_match_the_environment_exactly() -> None:
    """Linux environments are case-sensitive; so is the model (no `port` for `PORT`)."""
    assert load(port="1", Port="2").port == 8000
    assert refusal(FleetSettings, {"database_url": PROD["DATABASE_URL"]}) \
        == "DATABASE_URL is required but not set"


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_by_name_gives_every_value_under_its_variable_with_secrets_revealed() -> None:
    values = load().by_name()
    assert set(values) == {d.name for d in FleetSettings.declared()}
    assert values["DATABASE_URL"] == PROD["DATABASE_URL"]
    assert values["JWT_SECRET"] == SECRET and values["PORT"] == 8000


# --- production and development ---------------------------------------------------------------

@pytest.mark.parametrize("missing", ["DATABASE_URL", "BROKER_URL"])
def test_production_needs_every_connection(missing: str) -> None:
    env = {k: v for k, v in PROD.items() if k != missing}
    assert refusal(FleetSettings, env) == f"{missing} is required but not set"


def test_production_names_the_first_missing_setting_in_declaration_order() -> None:
    assert refusal(FleetSettings, {}) == "DATABASE_URL is required but not set"


def test_production_needs_the_jwt_secret_for_hs256() -> None:
    env = {k: v for k, v in PROD.items() if k != "JWT_SECRET"}
    assert refusal(FleetSettings, env) == "JWT_SECRET is required when JWT_ALGORITHM=HS256"


def test_development_supplies_local_defaults_for_this_service() -> None:
    settings = FleetSettings.load({"FLEET_ENV": "development"}, service="shipping")
    assert settings.development
    assert settings.database_url.get_secret_value() \
        == "postgresql://shipping:shipping@127.0.0.1:5432/fleet_shipping"
    assert settings.broker_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == DEVELOPMENT_JWT_SECRET


def test_a_given_value_wins_over_a_development_default() -> None:
    settings = FleetSettings.load({"FLEET_ENV": "development", **PROD}, service="shipping")
    assert settings.database_url.get_secret_value() == PROD["DATABASE_URL"]
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == SECRET


def test_a_development_default_that_names_the_service_needs_the_service() -> None:
    with pytest.raises(ConfigError, match="^DATABASE_URL is required but not set$"):
        FleetSettings.load({"FLEET_ENV": "development"})


@pytest.mark.parametrize("fleet_env", ["", "production", "staging", "Development"])
def test_only_an_explicit_development_supplies_development_defaults(fleet_env: str) -> None:
    env = {"FLEET_ENV": fleet_env} if fleet_env else {}
    message = refusal(FleetSettings, env)
    if fleet_env in ("", "production"):
        assert message == "DATABASE_URL is required but not set"
    else:
        assert message == (f"FLEET_ENV={fleet_env!r} is invalid: must be one of production, "
                           "development")


def test_the_development_jwt_secret_is_refused_in_production() -> None:
    assert refusal(FleetSettings, {**PROD, "JWT_SECRET": DEVELOPMENT_JWT_SECRET}).startswith(
        "JWT_SECRET=<hidden> is invalid: it is a published placeholder or development value")


@pytest.mark.parametrize("placeholder", ["change-me-to-a-long-random-string",
                                         "REPLACE_ME-" * 4, "fleet-development-secret",
                                         "a-placeholder-secret-of-32-bytes!!"])
def test_placeholder_secrets_are_refused_in_production_only(placeholder: str) -> None:
    for name in ("JWT_SECRET", "JWT_PREVIOUS_SECRET"):
        message = refusal(FleetSettings, {**PROD, name: placeholder})
        assert message.startswith(f"{name}=<hidden> is invalid: ")
        assert placeholder not in message
    if len(placeholder.encode()) >= 32:
        FleetSettings.load({**PROD, "FLEET_ENV": "development", "JWT_SECRET": placeholder})


# --- secrets ------------------------------------------------------------------------------------

def test_secrets_are_secret_types_hidden_from_repr() -> None:
    settings = load(JWT_PREVIOUS_SECRET="p" * 40,
                    MIGRATION_DATABASE_URL="postgresql://owner:hunter2@db/x")
    for value in (settings.database_url, settings.broker_url, settings.jwt_secret,
                  settings.jwt_previous_secret, settings.migration_database_url):
        assert isinstance(value, SecretStr)
    shown = repr(settings) + str(settings)
    for secret in (SECRET, "p" * 40, "hunter2", "u:p@db"):
        assert secret not in shown


def test_the_secret_settings_are_exactly_the_connections_and_the_hmac_secrets() -> None:
    assert {d.name for d in ShippingLike.declared() if d.secret} == {
        "DATABASE_URL", "BROKER_URL", "MIGRATION_DATABASE_URL", "JWT_SECRET",
        "JWT_PREVIOUS_SECRET", "PARTNER_URL", "PARTNER_TOKEN"}


@pytest.mark.parametrize(("name", "value"), [
    ("DATABASE_URL", "mysql://root:hunter2@db/x"), ("BROKER_URL", "http://u:hunter2@mq/"),
    ("MIGRATION_DATABASE_URL", "postgresql://:hunter2@/x"), ("JWT_SECRET", "hunter2"),
    ("JWT_PREVIOUS_SECRET", "hunter2"), ("JWT_SECRET", " " * 40)])
def test_a_malformed_secret_is_named_and_hidden(name: str, value: str) -> None:
    message = refusal(FleetSettings, {**PROD, name: value})
    assert message.startswith(f"{name}=<hidden> is invalid: ")
    assert "hunter2" not in message


def test_no_secret_may_have_a_production_default() -> None:
    with pytest.raises(TypeError, match="secret setting API_TOKEN must not have a production"):
        class Leaky(FleetSettings):
            api_token: Secret = SecretStr("x" * 40)
    with pytest.raises(TypeError, match="secret setting API_TOKEN must not have a production"):
        class LeakyOptional(FleetSettings):
            api_token: Secret | None = SecretStr("x" * 40)


def test_every_secret_of_the_model_has_no_production_default() -> None:
    for model in (FleetSettings, ShippingLike):
        assert all(d.default is None for d in model.declared() if d.secret)


# --- one line naming the setting ----------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "message"), [
    ("PORT", "http", "PORT='http' is invalid: must be a TCP port (1-65535)"),
    ("PORT", "70000", "PORT='70000' is invalid: must be a TCP port (1-65535)"),
    ("HEALTH_PORT", "0", "HEALTH_PORT='0' is invalid: must be a TCP port (1-65535)"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY='0' is invalid: must be a positive integer"),
    ("GUNICORN_THREADS", "four", "GUNICORN_THREADS='four' is invalid: must be a whole number"),
    ("GRACEFUL_TIMEOUT", "20s", "GRACEFUL_TIMEOUT='20s' is invalid: must be a whole number"),
    ("DB_MAX_OVERFLOW", "-1", "DB_MAX_OVERFLOW='-1' is invalid: must be zero or a positive"),
    ("DB_PGBOUNCER", "yes", "DB_PGBOUNCER='yes' is invalid: must be true or false"),
    ("METRICS_ENABLED", "on", "METRICS_ENABLED='on' is invalid: must be true or false"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD' is invalid: must be one of DEBUG, INFO, WARNING, "
                          "ERROR"),
    ("JWT_ALGORITHM", "none", "JWT_ALGORITHM='none' is invalid: must be one of HS256, RS256, "
                              "ES256"),
    ("EVENT_RETRY_DELAYS_MS", "1,-2", "EVENT_RETRY_DELAYS_MS='1,-2' is invalid: must be a "
                                      "comma-separated list of positive milliseconds"),
    ("EVENT_RETRY_DELAYS_MS", "1s", "EVENT_RETRY_DELAYS_MS='1s' is invalid: must be a comma"),
    ("EVENT_EXCHANGE", "   ", "EVENT_EXCHANGE='   ' is invalid: must not be empty"),
    ("JWT_AUDIENCE", " , ", "JWT_AUDIENCE=' , ' is invalid: must name at least one audience"),
    ("JWT_LEEWAY", "10m", "JWT_LEEWAY='10m' is invalid: must be at most 5m"),
    ("JWT_JWKS_URL", "ftp://idp/jwks", "JWT_JWKS_URL='ftp://idp/jwks' is invalid: must be a "
                                       "https/http URL with a host"),
])
def test_a_malformed_setting_is_one_line_naming_it(name: str, value: str, message: str) -> None:
    assert refusal(FleetSettings, {**PROD, name: value}).startswith(message)


@pytest.mark.parametrize("raw", ["30", "0s", "-5s", "1.5s", "5 minutes", "1e9d", "s", ""])
def test_a_malformed_duration_names_the_setting_and_the_form(raw: str) -> None:
    if not raw:
        assert load(INBOX_RETENTION=raw).inbox_retention == 7 * DAY
        return
    message = refusal(FleetSettings, {**PROD, "INBOX_RETENTION": raw})
    assert message.startswith(f"INBOX_RETENTION={raw!r} is invalid: must be")


def test_a_value_with_a_newline_is_still_one_line() -> None:
    message = refusal(FleetSettings, {**PROD, "PORT": "80\n80"})
    assert message == "PORT='80\\n80' is invalid: must be a TCP port (1-65535)"


def test_the_first_malformed_setting_is_named() -> None:
    message = refusal(FleetSettings, {**PROD, "LOG_LEVEL": "LOUD", "DB_POOL_SIZE": "0"})
    assert message.startswith("LOG_LEVEL=")


# --- the JWT settings that only make sense together -------------------------------------------

def _pem(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
_P256 = ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.mark.parametrize(("env", "message"), [
    ({"JWT_JWKS_URL": "https://idp.example/jwks"}, "JWT_JWKS_URL needs JWT_ALGORITHM=RS256 or "
                                                    "ES256 (the provider's algorithm), not HS256"),
    ({**JWKS, "JWT_PREVIOUS_SECRET": "o" * 40}, "JWT_PREVIOUS_SECRET is only for "
                                                 "JWT_ALGORITHM=HS256, not RS256"),
    ({**JWKS, "JWT_PUBLIC_KEY": _pem(_RSA)}, "JWT_PUBLIC_KEY and JWT_JWKS_URL are both set"),
    ({**JWKS, "JWT_JWKS_URL": ""}, "JWT_PUBLIC_KEY (a PEM public key) or JWT_JWKS_URL is "
                                   "required when JWT_ALGORITHM=RS256"),
    ({**JWKS, "JWT_JWKS_URL": "http://idp.example/jwks"}, "JWT_JWKS_URL is invalid: must be "
                                                          "https"),
    ({**JWKS, "JWT_ISSUER": ""}, "JWT_ISSUER is required when JWT_JWKS_URL is set (production)"),
    ({**JWKS, "JWT_AUDIENCE": ""}, "JWT_AUDIENCE is required when JWT_JWKS_URL is set"),
    ({**JWKS, "JWT_JWKS_URL": "", "JWT_ALGORITHM": "ES256", "JWT_PUBLIC_KEY": _pem(_RSA)},
     "JWT_PUBLIC_KEY is invalid for JWT_ALGORITHM=ES256: ES256 needs an EC public key"),
    ({**JWKS, "JWT_JWKS_URL": "", "JWT_PUBLIC_KEY": "not a key"},
     "JWT_PUBLIC_KEY is invalid for JWT_ALGORITHM=RS256: not a PEM public key"),
])
def test_jwt_settings_that_do_not_fit_together_are_refused(env: dict[str, str],
                                                           message: str) -> None:
    assert refusal(FleetSettings, {**PROD, **env}).startswith(message)


@pytest.mark.parametrize(("algorithm", "key"), [("RS256", _RSA), ("ES256", _P256)])
def test_a_public_key_of_the_right_kind_loads(algorithm: str, key: Any) -> None:
    env = {**JWKS, "JWT_JWKS_URL": "", "JWT_ALGORITHM": algorithm, "JWT_PUBLIC_KEY": _pem(key)}
    settings = FleetSettings.load(env)
    assert settings.jwt_algorithm == algorithm and settings.jwt_public_key == _pem(key)
    assert settings.jwt_secret is None


def test_a_jwks_provider_loads_with_its_issuer_and_audiences() -> None:
    settings = FleetSettings.load({**JWKS, "JWT_AUDIENCE": "fleet-api, legacy"})
    assert settings.jwt_jwks_url == "https://idp.example/jwks"
    assert settings.jwt_audience == ("fleet-api", "legacy")


def test_development_relaxes_only_what_is_local() -> None:
    dev = {"FLEET_ENV": "development"}
    FleetSettings.load({**dev, "JWT_ALGORITHM": "RS256",
                        "JWT_JWKS_URL": "http://idp.local:8080/jwks"}, service="x")
    FleetSettings.load({**JWKS, "JWT_JWKS_URL": "http://127.0.0.1:8080/jwks"})
    assert refusal(FleetSettings, {**dev, "JWT_SECRET": "short"}) \
        == "JWT_SECRET=<hidden> is invalid: must be at least 32 bytes"


# --- services extend the model -----------------------------------------------------------------

def test_a_service_adds_its_own_settings_by_subclassing() -> None:
    env = {**PROD, "PARTNER_URL": "postgresql://p@partner/x"}
    settings = ShippingLike.load(env)
    assert (settings.saga_deadline, settings.saga_max_requests) == (180.0, 3)
    assert settings.database_url.get_secret_value() == PROD["DATABASE_URL"]
    settings = ShippingLike.load({**env, "SAGA_DEADLINE": "90s", "SAGA_MAX_REQUESTS": "5"})
    assert (settings.saga_deadline, settings.saga_max_requests) == (90.0, 5)


@pytest.mark.parametrize(("name", "raw"), [
    ("SAGA_DEADLINE", "3"), ("SAGA_DEADLINE", "0s"), ("SAGA_DEADLINE", "soon"),
    ("SAGA_MAX_REQUESTS", "0"), ("SAGA_MAX_REQUESTS", "-1"), ("SAGA_MAX_REQUESTS", "two")])
def test_a_service_setting_is_refused_like_a_common_one(name: str, raw: str) -> None:
    env = {**PROD, "PARTNER_URL": "postgresql://p@partner/x", name: raw}
    assert refusal(ShippingLike, env).startswith(f"{name}={raw!r} is invalid: must be")


def test_a_service_setting_has_its_own_development_default_and_secrecy() -> None:
    assert refusal(ShippingLike, PROD) == "PARTNER_URL is required but not set"
    settings = ShippingLike.load({"FLEET_ENV": "development"}, service="shipping")
    assert settings.partner_url.get_secret_value() == "postgresql://shipping@127.0.0.1/p"
    message = refusal(ShippingLike, {**PROD, "PARTNER_URL": "mysql://hunter2@x/y"})
    assert message.startswith("PARTNER_URL=<hidden> is invalid") and "hunter2" not in message
    assert refusal(ShippingLike, {**PROD, "PARTNER_URL": "postgresql://p@partner/x",
                                  "PARTNER_TOKEN": "  "}) \
        == "PARTNER_TOKEN=<hidden> is invalid: must not be empty"


def test_a_subclass_keeps_the_jwt_checks() -> None:
    env = {**PROD, "PARTNER_URL": "postgresql://p@partner/x", "JWT_SECRET": "short"}
    assert refusal(ShippingLike, env) == \
        "JWT_SECRET=<hidden> is invalid: must be at least 32 bytes"


def test_a_service_check_of_the_whole_model_is_one_line() -> None:
    from pydantic import model_validator

    class Checked(FleetSettings):
        low: PositiveInt = 1
        high: PositiveInt = 2

        @model_validator(mode="after")
        def _ordered(self) -> Checked:
            if self.low > self.high:
                raise ConfigError(f"LOW={self.low} is invalid: must be at most HIGH")
            return self

    assert refusal(Checked, {**PROD, "LOW": "3"}) == "LOW=3 is invalid: must be at most HIGH"


# --- the groups load without a service's secrets ----------------------------------------------

def test_the_process_settings_need_no_secret() -> None:
    settings = ProcessSettings.load({})
    assert (settings.bind_host, settings.port, settings.web_concurrency,
            settings.gunicorn_threads, settings.graceful_timeout) == ("0.0.0.0", 8000, 2, 4, 20)
    assert ProcessSettings.load({"PORT": "9001", "DATABASE_URL": "mysql://x"}).port == 9001
    assert refusal(ProcessSettings, {"WEB_CONCURRENCY": "-2"}).startswith("WEB_CONCURRENCY=")


@pytest.mark.parametrize("group", [ProcessSettings, EventSettings, DatabaseSettings,
                                   JwtSettings])
def test_every_group_is_part_of_the_service_model_with_the_same_defaults(
        group: type[BaseFleetSettings]) -> None:
    alone = group.load({})
    whole = load()
    assert issubclass(FleetSettings, group)
    for name in type(alone).model_fields:
        assert getattr(alone, name) == getattr(whole, name), name
    assert not [d for d in group.declared() if d.secret or d.required]


def test_the_declared_settings_say_what_a_deployment_must_give() -> None:
    declared = {d.name: d for d in FleetSettings.declared("inventory")}
    assert [name for name, d in declared.items() if d.required] == ["DATABASE_URL",
                                                                    "BROKER_URL"]
    assert declared["DATABASE_URL"].development == \
        "postgresql://inventory:inventory@127.0.0.1:5432/fleet_inventory"
    assert declared["JWT_SECRET"].development == DEVELOPMENT_JWT_SECRET
    assert declared["RELAY_IDLE_POLL"].default == "250ms"
    assert declared["EVENT_RETRY_DELAYS_MS"].default == "1000,10000,60000"
    assert declared["DB_PGBOUNCER"].default == "false"
    assert declared["JWT_ISSUER"].default is None and not declared["JWT_ISSUER"].required


def test_every_declared_default_reads_back_as_the_default() -> None:
    """The defaults as text (docs, deploy checks) are the model's, not a second copy."""
    env = {d.name: d.default for d in ShippingLike.declared() if d.default is not None}
    given = ShippingLike.load({**PROD, "PARTNER_URL": "postgresql://p@partner/x", **env})
    defaults = ShippingLike.load({**PROD, "PARTNER_URL": "postgresql://p@partner/x"})
    assert given == defaults


def test_a_bare_model_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("port", "1")
    assert ProcessSettings().port == 9123
    assert ProcessSettings.load().port == 9123


def test_literal_fields_list_their_choices() -> None:
    class Mode(ProcessSettings):
        mode: Literal["a", "b"] = "a"
        name: Text = "n"

    assert refusal(Mode, {"MODE": "c"}) == "MODE='c' is invalid: must be one of a, b"
    assert Mode.load({"MODE": "b"}).mode == "b"


# --- loading: overrides, prefixes, one value, the defaults as an object ------------------------

def test_overrides_go_on_top_of_the_environment_given() -> None:
    settings = FleetSettings.load(PROD, overrides={"PORT": "9009", "JWT_SECRET": "o" * 40})
    assert settings.port == 9009
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == "o" * 40


def test_a_prefix_names_the_variables_and_the_errors() -> None:
    class Layout(SettingsModel):
        api_replicas: PositiveInt | None = None

    assert Layout.load({"FLEET_SHIPPING_API_REPLICAS": "3"},
                       prefix="FLEET_SHIPPING_").api_replicas == 3
    assert Layout.load({"API_REPLICAS": "3"}, prefix="FLEET_SHIPPING_").api_replicas is None
    with pytest.raises(ConfigError, match="^FLEET_SHIPPING_API_REPLICAS='0' is invalid: must be "
                                          "a positive integer$"):
        Layout.load({"FLEET_SHIPPING_API_REPLICAS": "0"}, prefix="FLEET_SHIPPING_")


def test_a_model_may_be_development_by_definition() -> None:
    class Local(SettingsModel):
        always_development: ClassVar[bool] = True
        broker: Annotated[Secret, Development("guest@localhost")]

    class Service(SettingsModel):
        broker: Annotated[Secret, Development("guest@localhost")]

    assert Local.load({}).broker.get_secret_value() == "guest@localhost"
    with pytest.raises(ConfigError, match="^BROKER is required but not set$"):
        Service.load({})


def test_one_value_is_checked_as_load_reads_it() -> None:
    assert FleetSettings.check_value("INBOX_RETENTION", "2d") == 2 * DAY
    assert FleetSettings.check_value("EVENT_RETRY_DELAYS_MS", "5,10") == (5, 10)
    with pytest.raises(ConfigError, match="^PORT='x' is invalid: must be a TCP port"):
        FleetSettings.check_value("PORT", "x")
    with pytest.raises(ConfigError, match="^DATABASE_URL=<hidden> is invalid"):
        FleetSettings.check_value("DATABASE_URL", "mysql://root:hunter2@db/x")
    with pytest.raises(KeyError):
        FleetSettings.check_value("NOT_A_SETTING", "x")


def test_the_defaults_of_a_group_are_one_object() -> None:
    assert defaults(DatabaseSettings) == DatabaseSettings.load({})
    assert defaults(DatabaseSettings) is defaults(DatabaseSettings)


def test_the_connections_load_without_the_token_keys() -> None:
    settings = ConnectionSettings.load({"DATABASE_URL": PROD["DATABASE_URL"],
                                        "BROKER_URL": PROD["BROKER_URL"]})
    assert settings.database_url.get_secret_value() == PROD["DATABASE_URL"]
    assert refusal(ConnectionSettings, {}) == "DATABASE_URL is required but not set"


def test_the_library_takes_its_defaults_from_the_model() -> None:
    """Objects built without loaded settings (tests, benchmarks) get the model's values, so a
    default is never written twice."""
    import inspect

    from fleet_shared.db import Database, PoolSizes, Timeouts
    from fleet_shared.events.consumer import Consumer
    from fleet_shared.events.relay import OutboxRelay
    from fleet_shared.http.auth import ClaimRules
    from fleet_shared.http.jwks import JwksKeys
    from fleet_shared.migrations import MigrationLock
    from fleet_shared.worker import Worker

    def default(function: Any, name: str) -> Any:
        return inspect.signature(function).parameters[name].default

    database, events, jwt, process = (defaults(DatabaseSettings), defaults(EventSettings),
                                      defaults(JwtSettings), defaults(ProcessSettings))
    assert Timeouts() == Timeouts.from_settings(database)
    assert PoolSizes() == PoolSizes.from_settings(database)
    assert default(Database, "pool_size") == database.db_pool_size
    assert MigrationLock("x") == MigrationLock.from_settings("x", database)
    assert default(OutboxRelay, "idle_poll") == events.relay_idle_poll
    assert default(Consumer, "prefetch") == events.consumer_prefetch
    assert ClaimRules().leeway == jwt.jwt_leeway
    assert (default(JwksKeys, "refresh_interval"), default(JwksKeys, "lifetime"),
            default(JwksKeys, "timeout")) == (jwt.jwt_jwks_refresh, jwt.jwt_jwks_cache,
                                              jwt.jwt_jwks_timeout)
    assert (default(Worker, "graceful_timeout"), default(Worker, "bind_host")) == (
        process.graceful_timeout, process.bind_host)
