"""Where a model's raw values come from: the environment (or the file ``<NAME>_FILE`` names),
then, in development only, the `Development` defaults.

This package is the only code that reads the process environment for a setting
(shared-lib/tests/unit/test_environment_reads.py keeps it so).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from fleet_shared.settings.errors import ConfigError
from fleet_shared.settings.parsing import Development

#: ``<NAME>_FILE`` names a file holding the value of setting ``<NAME>``: the convention of the
#: official PostgreSQL and RabbitMQ images, so a Kubernetes Secret mounted as files never
#: passes through the environment, where ``kubectl describe``, crash reports and child
#: processes see it.
FILE_SUFFIX = "_FILE"


def process_environment() -> Mapping[str, str]:
    """This process's environment, for a loader given none."""
    return os.environ


def setting_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """What the environment gives setting `name`: its variable, or the contents of the file
    ``<name>_FILE`` names (trailing newlines removed); None for neither or an empty value.

    Both at once is refused rather than one silently winning: which one a deployment meant is
    not for the code to guess. An unreadable file is named, never its contents.
    """
    env = process_environment() if environ is None else environ
    value = env.get(name) or None
    path = env.get(name + FILE_SUFFIX) or None
    if path is None:
        return value
    if value is not None:
        raise ConfigError(f"{name} and {name}{FILE_SUFFIX} are both set: use one of them")
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n") or None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:
        why = "not UTF-8 text"
    raise ConfigError(f"{name}{FILE_SUFFIX}={path} cannot be read: {why}")


def env_name(field: str, prefix: str = "") -> str:
    """The environment variable of a field: its name in capitals, after the model's prefix."""
    return prefix + field.upper()


class EnvironmentSource(PydanticBaseSettingsSource):
    """Each field from its variable or from the file its ``<NAME>_FILE`` variable names.

    Names match exactly (the environment is case-sensitive) and an empty value counts as
    unset, so ``DATABASE_URL=`` in a compose file cannot pass for a URL.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str],
                 prefix: str) -> None:
        super().__init__(settings_cls)
        self.environ = environ
        self.prefix = prefix

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return setting_value(env_name(field_name, self.prefix), self.environ), field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for field_name in self.settings_cls.model_fields:
            value = setting_value(env_name(field_name, self.prefix), self.environ)
            if value is not None:
                found[field_name] = value
        return found


def development_default(field: FieldInfo, service: str | None) -> str | None:
    for marker in field.metadata:
        if isinstance(marker, Development):
            return marker.for_service(service)
    return None


class DevelopmentDefaults(PydanticBaseSettingsSource):
    """The `Development` values, when the sources before this one say ``FLEET_ENV=development``
    (or the model is `always` development, as the local fleet's is): production never falls
    back to a local default."""

    def __init__(self, settings_cls: type[BaseSettings], service: str | None,
                 always: bool = False) -> None:
        super().__init__(settings_cls)
        self.service = service
        self.always = always

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return development_default(field, self.service), field_name, False

    def __call__(self) -> dict[str, Any]:
        if not (self.always or self.current_state.get("fleet_env") == "development"):
            return {}
        found = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value = development_default(field, self.service)
            if value is not None:
                found[field_name] = value
        return found
