"""Configuration from the environment, validated once at start-up, as one typed model.

`FleetSettings` (pydantic-settings) declares every setting a service process reads, once: its
type, its production default and, where there is one, its development default. A service adds
its own by subclassing it::

    class ShippingSettings(FleetSettings):
        saga_deadline: Duration = 3 * MINUTE

and reads them as attributes (``settings.saga_deadline``, ``settings.database_url``); each field
is the environment variable of its name in capitals (``SAGA_DEADLINE``). Every entry point
(``<svc> api | worker | migrate``, gunicorn's config, fleetctl) loads a model with
``Model.load()``; nothing else reads a setting from the environment.

``load`` raises `ConfigError` naming the first missing or malformed setting; entry points turn
that into a single line on stderr and exit status 2 (`exit_on_config_error`), so a bad
deployment fails fast and says why.

Production is the default: only an explicit ``FLEET_ENV=development`` supplies the local
defaults (`Development`), and no secret (a `SecretStr` field) ever has a production default.
Every setting may instead be read from a file: ``<NAME>_FILE=/path``.

Modules: `parsing` (text to typed values, the field types), `sources` (the environment and
``<NAME>_FILE``, development defaults), `model` (`load` and its errors), `fleet` (the service
model and its groups), `jwt` (the JWT settings checked together).
"""

from pydantic_settings import SettingsConfigDict

from fleet_shared.settings.errors import ConfigError, exit_on_config_error
from fleet_shared.settings.fleet import (
    LOCAL_BROKER_URL,
    BaseFleetSettings,
    ConnectionSettings,
    DatabaseSettings,
    EventSettings,
    FleetSettings,
    JwtSettings,
    ProcessSettings,
)
from fleet_shared.settings.jwt import (
    ASYMMETRIC,
    DEVELOPMENT_JWT_SECRET,
    HMAC_ALGORITHMS,
    JWT_ALGORITHMS,
    check_public_key,
    is_well_known_secret,
    public_key_from_pem,
)
from fleet_shared.settings.model import Declared, SettingsModel, defaults
from fleet_shared.settings.parsing import (
    DAY,
    HOUR,
    MILLISECOND,
    MIN_HMAC_SECRET_BYTES,
    MINUTE,
    SECOND,
    AmqpUrl,
    Audiences,
    Development,
    Duration,
    Flag,
    HmacSecret,
    Leeway,
    Milliseconds,
    Names,
    NonNegativeInt,
    Port,
    PositiveInt,
    PostgresUrl,
    Secret,
    Text,
    WebUrl,
    between,
    format_duration,
    from_text,
    parse_duration,
    url,
)
from fleet_shared.settings.sources import FILE_SUFFIX, setting_value

__all__ = [
    "ASYMMETRIC", "DAY", "DEVELOPMENT_JWT_SECRET", "FILE_SUFFIX", "HMAC_ALGORITHMS", "HOUR",
    "JWT_ALGORITHMS", "LOCAL_BROKER_URL", "MILLISECOND", "MINUTE", "MIN_HMAC_SECRET_BYTES",
    "SECOND", "AmqpUrl", "Audiences", "BaseFleetSettings", "ConfigError", "ConnectionSettings",
    "DatabaseSettings", "Declared", "Development", "Duration", "EventSettings", "Flag",
    "FleetSettings", "HmacSecret", "JwtSettings", "Leeway", "Milliseconds", "Names",
    "NonNegativeInt", "Port", "PositiveInt", "PostgresUrl", "ProcessSettings", "Secret",
    "SettingsConfigDict", "SettingsModel", "Text", "WebUrl", "between", "check_public_key",
    "defaults", "exit_on_config_error", "format_duration", "from_text", "is_well_known_secret",
    "parse_duration", "public_key_from_pem", "setting_value", "url",
]
