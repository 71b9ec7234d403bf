"""`<NAME>_FILE` in the typed model: every setting may come from a mounted file (a Kubernetes
Secret), read from real files here."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_shared.settings import (
    DEVELOPMENT_JWT_SECRET,
    MINUTE,
    ConfigError,
    Duration,
    FleetSettings,
    ProcessSettings,
    Secret,
)

SECRET = "s" * 32
PROD = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F",
        "JWT_SECRET": SECRET}


class WithOwnSettings(FleetSettings):
    saga_deadline: Duration = 3 * MINUTE
    partner_token: Secret | None = None


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def without(*names: str) -> dict[str, str]:
    return {k: v for k, v in PROD.items() if k not in names}


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        FleetSettings.load(env, service="inventory")
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_secrets_are_read_from_their_files_without_the_trailing_newline(tmp_path: Path) -> None:
    env = without("DATABASE_URL", "BROKER_URL", "JWT_SECRET") | {
        "DATABASE_URL_FILE": write(tmp_path, "url", "postgresql://u:from-file@db/x\n"),
        "BROKER_URL_FILE": write(tmp_path, "broker", "amqps://u:f@mq/%2F\n\n"),
        "JWT_SECRET_FILE": write(tmp_path, "jwt", "j" * 40 + "\r\n")}
    settings = FleetSettings.load(env)
    assert settings.database_url.get_secret_value() == "postgresql://u:from-file@db/x"
    assert settings.broker_url.get_secret_value() == "amqps://u:f@mq/%2F"
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == "j" * 40


def test_any_setting_may_come_from_a_file_and_is_parsed_like_a_variable(tmp_path: Path) -> None:
    settings = FleetSettings.load({
        **PROD, "PORT_FILE": write(tmp_path, "port", "9001\n"),
        "INBOX_RETENTION_FILE": write(tmp_path, "retention", "2d"),
        "EVENT_RETRY_DELAYS_MS_FILE": write(tmp_path, "delays", "5,10\n"),
        "DB_PGBOUNCER_FILE": write(tmp_path, "flag", "true")})
    assert settings.port == 9001
    assert settings.inbox_retention == 2 * 86400
    assert settings.event_retry_delays_ms == (5, 10)
    assert settings.db_pgbouncer is True


def test_fleet_env_from_a_file_supplies_the_development_defaults(tmp_path: Path) -> None:
    settings = FleetSettings.load({"FLEET_ENV_FILE": write(tmp_path, "env", "development\n")},
                                  service="support")
    assert settings.development
    assert settings.database_url.get_secret_value().endswith("/fleet_support")
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == DEVELOPMENT_JWT_SECRET


def test_a_file_wins_over_a_development_default(tmp_path: Path) -> None:
    path = write(tmp_path, "url", "postgresql://from-file@db/x")
    settings = FleetSettings.load({"FLEET_ENV": "development", "DATABASE_URL_FILE": path},
                                  service="support")
    assert settings.database_url.get_secret_value() == "postgresql://from-file@db/x"


def test_a_service_setting_may_come_from_a_file_too(tmp_path: Path) -> None:
    settings = WithOwnSettings.load({
        **PROD, "SAGA_DEADLINE_FILE": write(tmp_path, "deadline", "90s\n"),
        "PARTNER_TOKEN_FILE": write(tmp_path, "token", "t" * 20)})
    assert settings.saga_deadline == 90.0
    assert settings.partner_token is not None
    assert settings.partner_token.get_secret_value() == "t" * 20


def test_a_multi_line_value_keeps_its_inner_lines(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key() \
        .public_bytes(serialization.Encoding.PEM,
                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    env = without("JWT_SECRET") | {"JWT_ALGORITHM": "RS256",
                                   "JWT_PUBLIC_KEY_FILE": write(tmp_path, "key", pem)}
    settings = FleetSettings.load(env)
    assert settings.jwt_public_key == pem.rstrip("\n")
    assert settings.jwt_public_key.count("\n") == pem.count("\n") - 1


def test_a_setting_and_its_file_together_are_refused_naming_both(tmp_path: Path) -> None:
    env = {**PROD, "DATABASE_URL_FILE": write(tmp_path, "url", "postgresql://u:p@db/y")}
    assert refusal(env) == "DATABASE_URL and DATABASE_URL_FILE are both set: use one of them"
    env = {**PROD, "PORT": "1", "PORT_FILE": write(tmp_path, "port", "2")}
    assert refusal(env) == "PORT and PORT_FILE are both set: use one of them"


def test_an_empty_variable_beside_a_file_is_not_both(tmp_path: Path) -> None:
    env = {**PROD, "PORT": "", "PORT_FILE": write(tmp_path, "port", "9002")}
    assert FleetSettings.load(env).port == 9002


@pytest.mark.parametrize("problem", ["missing", "directory", "not-utf8"])
def test_an_unreadable_file_is_one_line_naming_the_file_and_never_the_secret(
    tmp_path: Path, problem: str
) -> None:
    path = {"missing": str(tmp_path / "absent"), "directory": str(tmp_path),
            "not-utf8": write(tmp_path, "bin", b"\xffsecret-bytes\xfe")}[problem]
    message = refusal(without("JWT_SECRET") | {"JWT_SECRET_FILE": path})
    why = {"missing": "No such file or directory", "directory": "Is a directory",
           "not-utf8": "not UTF-8 text"}[problem]
    assert message == f"JWT_SECRET_FILE={path} cannot be read: {why}"
    assert "secret-bytes" not in message and "\\x" not in message


def test_a_path_the_process_cannot_read_is_named(tmp_path: Path) -> None:
    # A directory: unreadable as a file for root too (a mode-0 file is not, and CI runs as
    # root), and the same OSError path as a permission error.
    path = tmp_path / "mounted-as-a-directory"
    path.mkdir()
    message = refusal(without("JWT_SECRET") | {"JWT_SECRET_FILE": str(path)})
    assert message == f"JWT_SECRET_FILE={path} cannot be read: Is a directory"


def test_a_malformed_secret_from_a_file_is_hidden_and_says_where_it_came_from(
    tmp_path: Path
) -> None:
    env = without("DATABASE_URL") | {
        "DATABASE_URL_FILE": write(tmp_path, "url", "mysql://user:hunter2@db/x\n")}
    message = refusal(env)
    assert message == ("DATABASE_URL=<hidden> (read from DATABASE_URL_FILE) is invalid: must "
                       "be a postgresql/postgresql+psycopg URL with a host")


def test_a_malformed_plain_value_from_a_file_is_shown(tmp_path: Path) -> None:
    message = refusal({**PROD, "PORT_FILE": write(tmp_path, "port", "eighty\n")})
    assert message == "PORT='eighty' (read from PORT_FILE) is invalid: must be a TCP port " \
                      "(1-65535)"


def test_a_placeholder_secret_from_a_file_is_refused_in_production(tmp_path: Path) -> None:
    path = write(tmp_path, "jwt", "change-me-to-a-long-random-string\n")
    assert refusal(without("JWT_SECRET") | {"JWT_SECRET_FILE": path}).startswith(
        "JWT_SECRET=<hidden> is invalid: it is a published placeholder")


def test_an_empty_file_leaves_the_setting_unset(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty", "\n")
    settings = FleetSettings.load({**PROD, "JWT_PREVIOUS_SECRET_FILE": empty,
                                   "PORT_FILE": empty})
    assert settings.jwt_previous_secret is None and settings.port == 8000
    message = refusal(without("DATABASE_URL") | {"DATABASE_URL_FILE": empty})
    assert message == f"DATABASE_URL is required but DATABASE_URL_FILE={empty} is empty"


def test_an_empty_file_in_development_falls_back_to_the_development_default(
        tmp_path: Path) -> None:
    empty = write(tmp_path, "empty", "")
    settings = FleetSettings.load({"FLEET_ENV": "development", "BROKER_URL_FILE": empty},
                                  service="x")
    assert settings.broker_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_the_process_settings_read_files_as_the_service_does(tmp_path: Path) -> None:
    settings = ProcessSettings.load({"WEB_CONCURRENCY_FILE": write(tmp_path, "wc", "7\n"),
                                     "BIND_HOST_FILE": write(tmp_path, "host", "127.0.0.1")})
    assert (settings.web_concurrency, settings.bind_host) == (7, "127.0.0.1")
    with pytest.raises(ConfigError, match="^GRACEFUL_TIMEOUT_FILE=.* cannot be read"):
        ProcessSettings.load({"GRACEFUL_TIMEOUT_FILE": str(tmp_path / "absent")})


def test_a_file_of_a_setting_the_model_does_not_declare_is_not_read(tmp_path: Path) -> None:
    """Only declared settings are looked up: an unrelated `<X>_FILE` (POSTGRES_PASSWORD_FILE
    of a sidecar) is none of the model's business."""
    env = {**PROD, "POSTGRES_PASSWORD_FILE": str(tmp_path / "absent")}
    FleetSettings.load(env)
