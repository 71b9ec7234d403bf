"""`<NAME>_FILE`: every setting may come from a mounted file (a Kubernetes Secret), read by the
one loader the services and fleetctl share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_shared.settings import ConfigError, FleetSettings, setting_value

SECRET = "s" * 32
PROD = {"DATABASE_URL": "postgresql://u:p@db:5432/x", "BROKER_URL": "amqp://u:p@mq:5672/%2F",
        "JWT_SECRET": SECRET}


def load(env: dict[str, str]) -> FleetSettings:
    return FleetSettings.load(env, service="inventory")


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def test_a_secret_is_read_from_its_file_without_the_trailing_newline(tmp_path: Path) -> None:
    env = {k: v for k, v in PROD.items() if k != "DATABASE_URL"}
    env["DATABASE_URL_FILE"] = write(tmp_path, "url", "postgresql://u:from-file@db/x\n")
    env["JWT_SECRET_FILE"] = write(tmp_path, "jwt", "j" * 40 + "\r\n")
    del env["JWT_SECRET"]
    settings = load(env)
    assert settings.database_url.get_secret_value() == "postgresql://u:from-file@db/x"
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == "j" * 40


def test_any_setting_may_come_from_a_file(tmp_path: Path) -> None:
    settings = load({
        **PROD, "PORT_FILE": write(tmp_path, "port", "9001\n"),
        "FLEET_ENV_FILE": write(tmp_path, "env", "development")})
    assert settings.port == 9001
    assert settings.development


def test_a_multi_line_value_keeps_its_inner_lines(tmp_path: Path) -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    path = write(tmp_path, "key", pem)
    assert setting_value("JWT_PUBLIC_KEY", {"JWT_PUBLIC_KEY_FILE": path}) == pem.rstrip("\n")


def test_a_setting_and_its_file_together_are_refused_naming_both(tmp_path: Path) -> None:
    env = {**PROD, "DATABASE_URL_FILE": write(tmp_path, "url", "postgresql://u:p@db/y")}
    with pytest.raises(ConfigError) as error:
        load(env)
    assert str(error.value) == ("DATABASE_URL and DATABASE_URL_FILE are both set: "
                                "use one of them")


@pytest.mark.parametrize("problem", ["missing", "directory", "not-utf8"])
def test_an_unreadable_file_is_one_line_naming_the_setting_and_never_the_secret(
    tmp_path: Path, problem: str
) -> None:
    path = {"missing": str(tmp_path / "absent"), "directory": str(tmp_path),
            "not-utf8": write(tmp_path, "bin", b"\xffsecret-bytes\xfe")}[problem]
    env = {k: v for k, v in PROD.items() if k != "JWT_SECRET"} | {"JWT_SECRET_FILE": path}
    with pytest.raises(ConfigError) as error:
        load(env)
    message = str(error.value)
    assert message.startswith(f"JWT_SECRET_FILE={path} cannot be read: ")
    assert "\n" not in message and "secret-bytes" not in message and "\\x" not in message


def test_a_malformed_secret_from_a_file_is_hidden_and_says_where_it_came_from(
    tmp_path: Path
) -> None:
    env = {k: v for k, v in PROD.items() if k != "DATABASE_URL"}
    env["DATABASE_URL_FILE"] = write(tmp_path, "url", "mysql://user:hunter2@db/x\n")
    with pytest.raises(ConfigError) as error:
        load(env)
    assert str(error.value).startswith(
        "DATABASE_URL=<hidden> (read from DATABASE_URL_FILE) is invalid: must be a postgresql")
    assert "hunter2" not in str(error.value)


def test_an_empty_file_leaves_the_setting_unset(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty", "\n")
    settings = load({**PROD, "JWT_PREVIOUS_SECRET_FILE": empty})
    assert settings.jwt_previous_secret is None
    env = {k: v for k, v in PROD.items() if k != "DATABASE_URL"} | {"DATABASE_URL_FILE": empty}
    with pytest.raises(ConfigError, match=f"^DATABASE_URL is required but DATABASE_URL_FILE="
                                          f"{empty} is empty$"):
        load(env)


def test_every_declared_setting_may_come_from_its_file_variable(tmp_path: Path) -> None:
    """Each setting of the model, given only as `<NAME>_FILE`, is read from the file."""
    path = write(tmp_path, "value", "\n")
    for declared in FleetSettings.declared():
        with pytest.raises(ConfigError, match=f"^{declared.name} and {declared.name}_FILE "):
            load({**PROD, declared.name: "x", f"{declared.name}_FILE": path})


def test_an_unreadable_secret_file_stops_the_process_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL_FILE": str(tmp_path / "absent")}
    result = subprocess.run([sys.executable, "-m", "inventory", "worker"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"configuration error: DATABASE_URL_FILE={tmp_path / 'absent'} cannot be read: "
        "No such file or directory"]
