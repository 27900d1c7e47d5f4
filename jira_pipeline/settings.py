"""The pipeline's one settings model: every environment variable (and `.env`), validated on load.

Each problem surfaces as one `ConfigurationError` whose `variable` names the environment
variable; no message ever holds a secret. Blank values mean unset; real variables win over
`.env` in the working directory. Defaults live here and nowhere else.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

if TYPE_CHECKING:
    from jira_pipeline.jira.auth import OAuthEndpoints

AuthMode = Literal["basic", "pat", "oauth"]
Deployment = Literal["cloud", "datacenter"]

# Atlassian names a Cloud site by a UUID in its canonical 8-4-4-4-12 hex form.
_CLOUD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
# Tokens and ids travel in HTTP headers or form fields: printable ASCII, no spaces.
_TOKEN = re.compile(r"[!-~]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# MongoDB refuses these in database names on every platform, and names of 64 bytes or more.
_DATABASE_NAME_FORBIDDEN = '/\\. "$\x00'
_DATABASE_NAME_MAX_BYTES = 63
_MONGODB_SCHEMES = ("mongodb", "mongodb+srv")
# Set while settings are built from given values only (no environment, no `.env`).
_GIVEN_VALUES_ONLY: ContextVar[bool] = ContextVar("given_values_only", default=False)


class ConfigurationError(ValueError):
    """A setting is missing or malformed. `variable` is the environment variable to fix; the
    message starts with it and never contains a secret."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable} {problem}")


def _invalid(problem: str) -> PydanticCustomError:
    # No context: the problem text is used as it is (braces in a shown value stay braces).
    return PydanticCustomError("configuration", problem)


# ---- parsers: each takes the raw value (text from the environment, or a value from code) ----


def _parse_whole_number(value: Any, minimum: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = int(str(value))
        except ValueError:
            raise _invalid(f"must be a whole number, got {value!r}") from None
    if number < minimum:
        raise _invalid(f"must be at least {minimum}, got {number}")
    return number


def _whole_number(minimum: int) -> BeforeValidator:
    return BeforeValidator(lambda value: _parse_whole_number(value, minimum))


def _number(minimum: float, *, exclusive: bool = False) -> BeforeValidator:
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _invalid(f"must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise _invalid(f"must be a finite number, got {value!r}")
        if number < minimum or (exclusive and number == minimum):
            bound = "greater than" if exclusive else "at least"
            raise _invalid(f"must be {bound} {minimum:g}, got {value!r}")
        return number

    return BeforeValidator(parse)


def _minutes(minimum: int) -> BeforeValidator:
    def parse(value: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        return timedelta(minutes=_parse_whole_number(value, minimum))

    return BeforeValidator(parse)


def _url(value: Any) -> str:
    text = str(value)
    parsed = urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise _invalid(f"must be an http(s) URL such as https://acme.atlassian.net, got {text!r}")
    return text.rstrip("/")


def _secret(value: Any) -> SecretStr:
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if not _TOKEN.fullmatch(text):
        # Never echo the value: it is (meant to be) a secret.
        raise _invalid("must be printable ASCII without spaces or line breaks, as Atlassian "
                       "issues it (check for a stray space, quote or newline when pasting)")
    return SecretStr(text)


def _client_id(value: Any) -> str:
    text = str(value)
    if not _TOKEN.fullmatch(text):
        raise _invalid(f"must be printable ASCII without spaces (your OAuth app's client id), "
                       f"got {text!r}")
    return text


def _email(value: Any) -> str:
    text = str(value)
    if not _EMAIL.fullmatch(text):
        raise _invalid(f"must be the Atlassian account's email address, got {text!r}")
    return text


def _cloud_id(value: Any) -> str:
    text = str(value)
    if not _CLOUD_ID.fullmatch(text):
        raise _invalid("must be a UUID such as 1324a887-45db-1bf4-1e99-ef0ff456d421 (the Cloud "
                       f"site's id, from the OAuth accessible-resources answer), got {text!r}")
    return text


def _deployment(value: Any) -> str:
    if value not in ("cloud", "datacenter"):
        raise _invalid(f"must be cloud or datacenter, got {value!r}")
    return str(value)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise _invalid(f"must be true or false, got {value!r}")
    return text in ("true", "1", "yes")


def _fernet_keys(value: Any) -> SecretStr:
    from jira_pipeline.storage.crypto import TokenCipher  # cryptography only when keys are set

    secret = value if isinstance(value, SecretStr) else SecretStr(str(value))
    try:
        TokenCipher(secret.get_secret_value().split(","))
    except ConfigurationError as error:
        raise _invalid(error.problem) from None
    return secret


def _mongodb_uri(value: Any) -> SecretStr:
    secret = value if isinstance(value, SecretStr) else SecretStr(str(value))
    try:
        parts = urlsplit(secret.get_secret_value())
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in _MONGODB_SCHEMES or not host:
        # The URI may hold a password: show its scheme at most.
        shown = f"a {parts.scheme}:// URI" if parts is not None and parts.scheme else "no URI"
        raise _invalid(f"must be a mongodb:// or mongodb+srv:// URI naming a host (got {shown}); "
                       "unset it to use the embedded store")
    return secret


def database_name_problem(name: str) -> str | None:
    """Why MongoDB would refuse `name` as a database name, or None when it is fine (the
    embedded store would even turn `a/b` into nested folders)."""
    if not name:
        return "must not be empty"
    if any(character in _DATABASE_NAME_FORBIDDEN for character in name):
        return "must not contain / \\ . \" $, a space or a NUL character"
    if len(name.encode()) > _DATABASE_NAME_MAX_BYTES:
        return f"must be at most {_DATABASE_NAME_MAX_BYTES} bytes long"
    return None


def check_database_name(name: str) -> str:
    """`name`, if MongoDB accepts it as a database name; else a ConfigurationError naming
    MONGODB_DATABASE (also for a name given in code or on the command line)."""
    problem = database_name_problem(name)
    if problem is not None:
        raise ConfigurationError(
            "MONGODB_DATABASE", f"{problem} (a MongoDB database name), got {name!r}"
        )
    return name


def _database(value: Any) -> str:
    text = str(value)
    problem = database_name_problem(text)
    if problem is not None:
        raise _invalid(f"{problem} (a MongoDB database name), got {text!r}")
    return text


def _start_date(value: Any) -> date:
    if isinstance(value, date):
        day = value
    else:
        try:
            day = date.fromisoformat(str(value))
        except ValueError:
            raise _invalid(f"must be a date like 2024-01-31, got {value!r}") from None
    if day > date.today():
        raise _invalid(f"is in the future ({day.isoformat()}): no partition would exist yet")
    return day


def _project_keys(value: Any) -> tuple[str, ...]:
    from jira_pipeline.jira.jql import quote_project_key

    parts = value.split(",") if isinstance(value, str) else list(value)
    keys = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
    for key in keys:
        try:
            quote_project_key(key)
        except ValueError:
            raise _invalid(f"holds {key!r}, which is not a Jira project key (like ENG)") from None
    return keys


def _cron(value: Any) -> str:
    # Dagster's own rules, so a schedule that loads here also loads in Dagster.
    from dagster._utils.schedules import has_out_of_range_cron_interval, is_valid_cron_schedule

    text = str(value)
    if not is_valid_cron_schedule(text):
        raise _invalid(f"must be a cron schedule Dagster accepts (5 fields, each in range, such "
                       f"as '0 2 * * *'), got {text!r}")
    if has_out_of_range_cron_interval(text):
        raise _invalid(f"has a step larger than its field's range, which Dagster would run more "
                       f"often than written, got {text!r}")
    return text


def _variable(name: str) -> Any:
    """The field reads environment variable `name` (and code may pass it by field name)."""
    return Field(default=None, validation_alias=name)


class PipelineSettings(BaseSettings):
    """Everything the code location, the Jira client and the store are configured with."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        hide_input_in_errors=True,
        validate_default=False,  # defaults are right by construction (some are None)
    )

    # -- the Jira site of the environment (registered connections live in jira_connections) --
    base_url: Annotated[str | None, BeforeValidator(_url)] = _variable("JIRA_BASE_URL")
    email: Annotated[str | None, BeforeValidator(_email)] = _variable("JIRA_EMAIL")
    api_token: Annotated[SecretStr | None, BeforeValidator(_secret)] = _variable("JIRA_API_TOKEN")
    pat: Annotated[SecretStr | None, BeforeValidator(_secret)] = _variable("JIRA_PAT")
    oauth_client_id: Annotated[str | None, BeforeValidator(_client_id)] = _variable(
        "JIRA_OAUTH_CLIENT_ID"
    )
    oauth_client_secret: Annotated[SecretStr | None, BeforeValidator(_secret)] = _variable(
        "JIRA_OAUTH_CLIENT_SECRET"
    )
    cloud_id: Annotated[str | None, BeforeValidator(_cloud_id)] = _variable("JIRA_CLOUD_ID")
    deployment: Annotated[Deployment | None, BeforeValidator(_deployment)] = _variable(
        "JIRA_DEPLOYMENT"
    )
    verify_tls: Annotated[bool, BeforeValidator(_flag)] = Field(
        default=True, validation_alias="JIRA_VERIFY_TLS"
    )
    # OAuth endpoints: Atlassian's unless overridden (the fake Jira serves them all at an origin)
    oauth_origin: Annotated[str | None, BeforeValidator(_url)] = _variable("JIRA_OAUTH_ORIGIN")
    oauth_authorize_url: Annotated[str | None, BeforeValidator(_url)] = _variable(
        "JIRA_OAUTH_AUTHORIZE_URL"
    )
    oauth_token_url: Annotated[str | None, BeforeValidator(_url)] = _variable(
        "JIRA_OAUTH_TOKEN_URL"
    )
    oauth_api_base: Annotated[str | None, BeforeValidator(_url)] = _variable("JIRA_OAUTH_API_BASE")
    oauth_resources_url: Annotated[str | None, BeforeValidator(_url)] = _variable(
        "JIRA_OAUTH_RESOURCES_URL"
    )

    # -- the Jira client's pacing, timeout and retries (every site's) --
    min_request_interval_ms: Annotated[int, _whole_number(0)] = Field(
        default=200, validation_alias="JIRA_MIN_REQUEST_INTERVAL_MS"
    )
    max_in_flight: Annotated[int, _whole_number(1)] = Field(
        default=4, validation_alias="JIRA_MAX_IN_FLIGHT"
    )
    timeout_s: Annotated[float, _number(0, exclusive=True)] = Field(
        default=30.0, validation_alias="JIRA_TIMEOUT_S"
    )
    retry_attempts: Annotated[int, _whole_number(1)] = Field(
        default=6, validation_alias="JIRA_RETRY_ATTEMPTS"
    )
    retry_base_s: Annotated[float, _number(0)] = Field(
        default=1.0, validation_alias="JIRA_RETRY_BASE_S"
    )
    retry_cap_s: Annotated[float, _number(0)] = Field(
        default=60.0, validation_alias="JIRA_RETRY_CAP_S"
    )

    # -- token encryption and the store --
    fernet_keys: Annotated[SecretStr | None, BeforeValidator(_fernet_keys)] = _variable(
        "JIRA_PIPELINE_FERNET_KEYS"
    )
    mongodb_uri: Annotated[SecretStr | None, BeforeValidator(_mongodb_uri)] = _variable(
        "MONGODB_URI"
    )
    mongodb_database: Annotated[str, BeforeValidator(_database)] = Field(
        default="jira", validation_alias="MONGODB_DATABASE"
    )
    dagster_home: Path | None = _variable("DAGSTER_HOME")

    # -- what to sync, and when --
    sync_start_date: Annotated[date, BeforeValidator(_start_date)] = Field(
        default=date(2020, 1, 1), validation_alias="JIRA_SYNC_START_DATE"
    )
    projects: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_project_keys)] = Field(
        default=(), validation_alias="JIRA_PROJECTS"
    )
    lookback: Annotated[timedelta, _minutes(0)] = Field(
        default=timedelta(minutes=10), validation_alias="JIRA_LOOKBACK_MINUTES"
    )
    consistency_lag: Annotated[timedelta, _minutes(0)] = Field(
        default=timedelta(minutes=15), validation_alias="JIRA_CONSISTENCY_LAG_MINUTES"
    )
    schedule_cron: Annotated[str, BeforeValidator(_cron)] = Field(
        default="0 2 * * *", validation_alias="JIRA_SCHEDULE_CRON"
    )
    sensor_interval_s: Annotated[int, _whole_number(30)] = Field(
        default=300, validation_alias="JIRA_SENSOR_INTERVAL_S"
    )
    freshness_tolerance: Annotated[timedelta, _minutes(1)] = Field(
        default=timedelta(hours=2), validation_alias="JIRA_FRESHNESS_TOLERANCE_MINUTES"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _GIVEN_VALUES_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings)

    @model_validator(mode="before")
    @classmethod
    def _blank_means_unset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {
            name: value.strip() if isinstance(value, str) else value
            for name, value in data.items()
            if value is not None and not (isinstance(value, str) and not value.strip())
        }

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> PipelineSettings:
        """Settings from `values` alone (field or variable names; no environment, no `.env`);
        what is not given takes its default."""
        with _naming_the_variable():
            return _from_values(values)

    @property
    def auth_mode(self) -> AuthMode:
        if self.oauth_client_id:
            return "oauth"
        if self.pat is not None:
            return "pat"
        return "basic"

    @property
    def configures_a_site(self) -> bool:
        """Whether the environment names a Jira site of its own (beside registered ones)."""
        return any(
            value is not None
            for value in (self.base_url, self.email, self.api_token, self.pat,
                          self.oauth_client_id)
        )  # fmt: skip

    @property
    def oauth_endpoints(self) -> OAuthEndpoints:
        from jira_pipeline.jira.auth import OAuthEndpoints

        if self.oauth_origin:
            return OAuthEndpoints.at_origin(self.oauth_origin)
        defaults = OAuthEndpoints()
        return OAuthEndpoints(
            authorize_url=self.oauth_authorize_url or defaults.authorize_url,
            token_url=self.oauth_token_url or defaults.token_url,
            api_base=self.oauth_api_base or defaults.api_base,
            accessible_resources_url=self.oauth_resources_url or defaults.accessible_resources_url,
        )

    def client_tuning(self) -> dict[str, Any]:
        """The Jira client's pacing, timeout and retry fields, shared by every site."""
        return {name: getattr(self, name) for name in _CLIENT_TUNING}

    def check_credentials(self) -> None:
        """The environment's Jira credentials are complete: else the missing one is named."""
        client_id, client_secret = self.oauth_client_id, self.oauth_client_secret
        if client_id or client_secret:
            if not client_id:
                raise ConfigurationError("JIRA_OAUTH_CLIENT_ID",
                                         "is not set but JIRA_OAUTH_CLIENT_SECRET is")
            if not client_secret:
                raise ConfigurationError("JIRA_OAUTH_CLIENT_SECRET",
                                         "is not set but JIRA_OAUTH_CLIENT_ID is")
        elif self.pat is not None:
            if self.base_url is None:
                raise ConfigurationError("JIRA_BASE_URL",
                                         "is not set: the URL of your Data Center site")
        elif self.configures_a_site:
            if self.base_url is None:
                raise ConfigurationError("JIRA_BASE_URL", "is not set: the URL of your Jira "
                                         "site, e.g. https://acme.atlassian.net")
            if self.email is None:
                raise ConfigurationError("JIRA_EMAIL", "is not set: give JIRA_EMAIL and "
                                         "JIRA_API_TOKEN (Cloud), JIRA_PAT (Data Center) or "
                                         "JIRA_OAUTH_CLIENT_ID/SECRET (OAuth)")
            if self.api_token is None:
                raise ConfigurationError("JIRA_API_TOKEN", "is not set but JIRA_EMAIL is")


_CLIENT_TUNING = ("min_request_interval_ms", "max_in_flight", "timeout_s", "retry_attempts",
                  "retry_base_s", "retry_cap_s")


_VARIABLES = tuple(
    str(field.validation_alias) for field in PipelineSettings.model_fields.values()
)


def variable_of(field: str) -> str:
    """The environment variable a settings field is read from."""
    alias = PipelineSettings.model_fields[field].validation_alias
    assert isinstance(alias, str)
    return alias


@contextmanager
def _naming_the_variable() -> Iterator[None]:
    """Turn pydantic's report into one `ConfigurationError` naming the first bad variable."""
    try:
        yield
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False, include_context=False)[0]
        location = str(first["loc"][0]) if first["loc"] else "configuration"
        variable = variable_of(location) if location in PipelineSettings.model_fields else location
        raise ConfigurationError(variable, first["msg"]) from None


def _from_values(values: Mapping[str, Any]) -> PipelineSettings:
    token = _GIVEN_VALUES_ONLY.set(True)
    try:
        return PipelineSettings.model_validate(dict(values))
    finally:
        _GIVEN_VALUES_ONLY.reset(token)


def _environment_fingerprint() -> tuple[object, ...]:
    """What `PipelineSettings()` reads: our variables, and which `.env` file in what state."""
    dotenv = Path.cwd() / ".env"
    try:
        stat = dotenv.stat()
        file_state: object = (str(dotenv), stat.st_mtime_ns, stat.st_size)
    except OSError:
        file_state = str(dotenv)
    return (file_state, date.today(), *(os.environ.get(name) for name in _VARIABLES))


# The last settings read from the environment: pydantic-settings takes about 1-2 ms to read
# them, and the store asks for its database name at every use.
_last_loaded: tuple[tuple[object, ...], PipelineSettings] | None = None


def load_settings(environ: Mapping[str, str] | None = None) -> PipelineSettings:
    """The settings of the environment and `./.env` (real variables win), checked whole.

    With `environ`, only that mapping is read. Raises `ConfigurationError` naming the variable.
    """
    global _last_loaded
    if environ is not None:
        with _naming_the_variable():
            settings = _from_values(environ)
        settings.check_credentials()
        return settings
    fingerprint = _environment_fingerprint()
    last = _last_loaded
    if last is not None and last[0] == fingerprint:
        return last[1]
    with _naming_the_variable():
        settings = PipelineSettings()
    settings.check_credentials()
    _last_loaded = (fingerprint, settings)
    return settings
