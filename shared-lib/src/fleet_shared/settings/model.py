"""The machinery every settings model shares: its sources, `load`, and refusals as one line.

A model is a pydantic-settings `BaseSettings` whose fields are the variables it reads: a field
is the variable of its name in capitals, after the model's ``env_prefix``. `load` reads them
from the environment (or from ``<NAME>_FILE``) and raises `ConfigError` naming the first one
that is missing or malformed, with a secret's value hidden.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    Self,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fleet_shared.settings.errors import ConfigError
from fleet_shared.settings.parsing import format_duration
from fleet_shared.settings.sources import (
    FILE_SUFFIX,
    DevelopmentDefaults,
    EnvironmentSource,
    development_default,
    env_name,
    process_environment,
)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The plain types an annotation admits: `Secret | None` -> (SecretStr, NoneType)."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(t for arg in get_args(annotation) for t in _members(arg))
    return (annotation,)


def is_secret(field: FieldInfo) -> bool:
    """Secrets are exactly the `SecretStr` fields: hidden in repr, in logs and in errors."""
    return SecretStr in _members(field.annotation)


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _as_text(value: Any) -> str | None:
    """A default written as the environment writes it (the parsers read it back unchanged)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_duration(value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _reason(field: FieldInfo | None, error: ErrorDetails) -> str:
    """Why a value was refused, in the words of the parsers."""
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if error["type"] == "literal_error" and field is not None:
        choices = [c for t in _members(field.annotation) if get_origin(t) is Literal
                   for c in get_args(t)]
        return f"must be one of {', '.join(map(str, choices))}"
    message = error["msg"]
    return message[:1].lower() + message[1:]


@dataclass(frozen=True)
class Declared:
    """One setting as a deployment sees it (docs, deploy checks)."""

    name: str  # the environment variable
    field: str
    secret: bool
    required: bool  # no production default: a deployment must give it
    default: str | None  # the production default, as the environment would write it
    development: str | None  # the FLEET_ENV=development default, likewise


class SettingsModel(BaseSettings):
    """A typed model of environment variables, read by `load`."""

    model_config = SettingsConfigDict(frozen=True)

    #: The local fleet is development by definition: its models take their `Development`
    #: defaults whatever FLEET_ENV says (a service's models only under FLEET_ENV=development).
    always_development: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            if is_secret(field) and field.default not in (None, PydanticUndefined):
                raise TypeError(f"secret setting {env_name(name, cls._prefix())} must not have "
                                "a production default")

    @classmethod
    def _prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix") or "")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A bare `Model()` reads the process environment as `load()` does, never a .env file.
        return (init_settings,
                *cls._sources(process_environment(), None, cls._prefix()))

    @classmethod
    def _sources(cls, environ: Mapping[str, str], service: str | None,
                 prefix: str) -> tuple[PydanticBaseSettingsSource, ...]:
        return (EnvironmentSource(cls, environ, prefix),
                DevelopmentDefaults(cls, service, cls.always_development))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, *, service: str | None = None,
             prefix: str | None = None, overrides: Mapping[str, str] | None = None) -> Self:
        """The settings `environ` (default: this process's environment) gives, with
        `overrides` on top; `service` fills the ``{service}`` of development defaults, and
        `prefix` replaces the model's ``env_prefix`` (one model read once per service).

        ConfigError names the first setting that is missing or malformed, on one line, with a
        secret's value hidden."""
        env = process_environment() if environ is None else environ
        if overrides:
            env = {**env, **overrides}
        prefix = cls._prefix() if prefix is None else prefix
        try:
            # mypy sees the __init__ of the fields, not BaseSettings' own with its options.
            return cls(_build_sources=(cls._sources(env, service, prefix),  # type: ignore[call-arg]
                                       {}))
        except ValidationError as error:
            raise ConfigError(cls._describe(error.errors()[0], env, prefix)) from None

    @classmethod
    def _describe(cls, error: ErrorDetails, env: Mapping[str, str], prefix: str) -> str:
        if not error["loc"]:  # a check of the whole model that raised ValueError
            return _reason(None, error)
        field_name = str(error["loc"][0])
        field = cls.model_fields[field_name]
        name = env_name(field_name, prefix)
        path = env.get(name + FILE_SUFFIX)
        if error["type"] == "missing":
            if path:
                return f"{name} is required but {name}{FILE_SUFFIX}={path} is empty"
            return f"{name} is required but not set"
        shown = "<hidden>" if is_secret(field) else repr(_plain(error["input"]))
        source = f" (read from {name}{FILE_SUFFIX})" if path else ""
        return f"{name}={shown}{source} is invalid: {_reason(field, error)}"

    @classmethod
    def declared(cls, service: str | None = None) -> tuple[Declared, ...]:
        """Every setting of the model, in declaration order."""
        prefix = cls._prefix()
        return tuple(
            Declared(env_name(name, prefix), name, is_secret(field), field.is_required(),
                     None if field.is_required() else _as_text(field.default),
                     development_default(field, service))
            for name, field in cls.model_fields.items())

    @classmethod
    def check_value(cls, name: str, raw: str) -> Any:
        """`raw` read as the value of variable `name`, as `load` reads it (one variable alone,
        for checks of a deployment's values); ConfigError says why not."""
        prefix = cls._prefix()
        field_name = next((f for f in cls.model_fields if env_name(f, prefix) == name), None)
        if field_name is None:
            raise KeyError(name)
        field = cls.model_fields[field_name]
        annotated: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata \
            else field.annotation
        try:
            return TypeAdapter(annotated).validate_python(raw)
        except ValidationError as error:
            raise ConfigError(cls._describe({**error.errors()[0], "loc": (field_name,)}, {},
                                            prefix)) from None

    def by_name(self) -> dict[str, Any]:
        """Every value under its variable's name, secrets revealed: for code that checks
        settings together or hands them on (a child process's environment)."""
        prefix = self._prefix()
        return {env_name(name, prefix): _plain(getattr(self, name))
                for name in type(self).model_fields}


M = TypeVar("M", bound=SettingsModel)


@cache
def defaults(model: type[M]) -> M:
    """`model` with nothing given: its defaults, for the parameters of code that also runs
    without loaded settings (tests, benchmarks), so that a default still lives only in the
    model. Only for models whose every field has one (the groups)."""
    return model.load({})
