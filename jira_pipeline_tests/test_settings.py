"""The one settings model: every variable of the README's configuration table, given a genuinely
malformed value, stops the code location from loading with a `ConfigurationError` whose
`variable` is that variable; defaults, `.env`, blanks and secrets behave as documented."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.settings import ConfigurationError, PipelineSettings, load_settings, variable_of
from jira_pipeline.storage.client import get_database
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.crypto import TokenCipher

REPO = Path(__file__).resolve().parents[1]
SITE = "https://acme-test.atlassian.net"  # never contacted: loading the definitions only
TOKEN = "made-up-api-token-4f1c9e"
BASIC = {"JIRA_BASE_URL": SITE, "JIRA_EMAIL": "me@acme.test", "JIRA_API_TOKEN": TOKEN}
CLOUD_ID = "1324a887-45db-1bf4-1e99-ef0ff456d421"
FERNET_KEY = TokenCipher.generate_key()
OAUTH = {"JIRA_OAUTH_CLIENT_ID": "some-client", "JIRA_OAUTH_CLIENT_SECRET": "some-secret",
         "JIRA_PIPELINE_FERNET_KEYS": FERNET_KEY}  # fmt: skip
SECRET_VARIABLES = {"JIRA_API_TOKEN", "JIRA_PAT", "JIRA_OAUTH_CLIENT_SECRET",
                    "JIRA_PIPELINE_FERNET_KEYS", "MONGODB_URI"}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """A variable with a value that loads (None: unset) and a malformed one; `companions` are
    set (None: unset) on top of a basic Cloud site; `oauth_connection` registers one."""

    valid: str | None
    malformed: str
    companions: Mapping[str, str | None] = field(default_factory=dict)
    oauth_connection: bool = False


def recently() -> str:
    return (datetime.now(UTC).date() - timedelta(days=3)).isoformat()


CASES: dict[str, Case] = {
    "JIRA_BASE_URL": Case(SITE, "acme.atlassian.net/jira"),
    "JIRA_EMAIL": Case("me@acme.test", "me.acme.test"),
    "JIRA_API_TOKEN": Case(TOKEN, "pasted token\nwith a line break"),
    # A Data Center site: no Cloud credentials, so no other variable can be the one named.
    "JIRA_PAT": Case("dc-pat-7f3a", "dc pat 7f3a", {"JIRA_EMAIL": None, "JIRA_API_TOKEN": None}),
    "JIRA_OAUTH_CLIENT_ID": Case("some-client", "my client id", OAUTH, oauth_connection=True),
    "JIRA_OAUTH_CLIENT_SECRET": Case("some-secret", "some secret", OAUTH, oauth_connection=True),
    "JIRA_CLOUD_ID": Case(CLOUD_ID, "acme.atlassian.net", OAUTH, oauth_connection=True),
    "JIRA_PIPELINE_FERNET_KEYS": Case(FERNET_KEY, "not-a-fernet-key"),
    "MONGODB_URI": Case(None, "http://127.0.0.1:27017"),
    "MONGODB_DATABASE": Case("jira_test", "jira/prod"),
    "JIRA_SYNC_START_DATE": Case(recently(), "2024-13-45"),
    "JIRA_PROJECTS": Case("ENG, OPS", "ENG, not a key!"),
    "JIRA_MIN_REQUEST_INTERVAL_MS": Case("0", "fast"),
    "JIRA_MAX_IN_FLIGHT": Case("2", "0"),
    "JIRA_TIMEOUT_S": Case("5", "-1"),
    "JIRA_RETRY_ATTEMPTS": Case("3", "many"),
    "JIRA_RETRY_BASE_S": Case("0.5", "one"),
    "JIRA_RETRY_CAP_S": Case("10", "-60"),
    "JIRA_LOOKBACK_MINUTES": Case("5", "ten"),
    "JIRA_CONSISTENCY_LAG_MINUTES": Case("20", "-5"),
    # Passes a 5-field regex, fails Dagster's own rules (minute 99).
    "JIRA_SCHEDULE_CRON": Case("30 3 * * 1-5", "99 2 * * *"),
    "JIRA_SENSOR_INTERVAL_S": Case("60", "1"),
    "JIRA_FRESHNESS_TOLERANCE_MINUTES": Case("60", "0"),
}


def readme_configuration_variables() -> list[str]:
    """The variables named in the first column of the README's configuration table."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting of the model in the environment, no `.env`, the store in `tmp_path`."""
    for name in PipelineSettings.model_fields:
        monkeypatch.delenv(variable_of(name), raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def apply(monkeypatch: pytest.MonkeyPatch, values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def test_every_variable_of_the_readme_table_has_a_malformed_case_here() -> None:
    assert sorted(readme_configuration_variables()) == sorted(CASES)


def test_every_variable_of_the_readme_table_is_a_setting_of_the_model() -> None:
    variables = {variable_of(name) for name in PipelineSettings.model_fields}
    assert set(readme_configuration_variables()) <= variables


@pytest.mark.parametrize("variable", sorted(CASES))
def test_a_malformed_variable_stops_loading_with_an_error_naming_it(
    variable: str, clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[variable]
    apply(monkeypatch, {**BASIC, **case.companions, variable: case.valid})
    if case.oauth_connection:
        ConnectionRepository(get_database()).add(
            "acme", SITE, auth_type="oauth", cloud_id=CLOUD_ID,
            access_token="an-access-token", refresh_token="a-refresh-token",
        )  # fmt: skip
    build_definitions()  # the same environment with a good value loads

    monkeypatch.setenv(variable, case.malformed)
    with pytest.raises(ConfigurationError) as raised:
        build_definitions()

    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"{variable} ")
    assert TOKEN not in str(raised.value)
    if variable in SECRET_VARIABLES:
        assert case.malformed not in str(raised.value)


def test_jira_pat_alone_names_the_missing_base_url_not_another_credential(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIRA_PAT", "dc-pat-7f3a")

    with pytest.raises(ConfigurationError) as raised:
        build_definitions()

    assert raised.value.variable == "JIRA_BASE_URL"


@pytest.mark.parametrize("missing", ["JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN"])
def test_a_missing_cloud_credential_is_named(missing: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({name: value for name, value in BASIC.items() if name != missing})
    assert raised.value.variable == missing


@pytest.mark.parametrize(
    ("given", "missing"),
    [("JIRA_OAUTH_CLIENT_ID", "JIRA_OAUTH_CLIENT_SECRET"),
     ("JIRA_OAUTH_CLIENT_SECRET", "JIRA_OAUTH_CLIENT_ID")],
)  # fmt: skip
def test_half_an_oauth_app_names_the_other_half(given: str, missing: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({given: "oauth-SECRET-9"})
    assert raised.value.variable == missing
    assert "oauth-SECRET-9" not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("JIRA_DEPLOYMENT", "server"), ("JIRA_VERIFY_TLS", "maybe"),
     ("JIRA_CLOUD_ID", "1324a887-45db-1bf4-1e99-ef0ff456d42"),
     ("JIRA_MIN_REQUEST_INTERVAL_MS", "-5"),
     ("JIRA_RETRY_ATTEMPTS", "1.5"), ("JIRA_TIMEOUT_S", "nan"), ("JIRA_SCHEDULE_CRON", "0 2 * *"),
     ("JIRA_SCHEDULE_CRON", "0 2 30 2 *"), ("JIRA_OAUTH_TOKEN_URL", "auth.atlassian.com/token"),
     ("JIRA_SYNC_START_DATE", (date.today() + timedelta(days=30)).isoformat()),
     ("MONGODB_URI", "mongodb://"), ("MONGODB_DATABASE", "j" * 64)],
)  # fmt: skip
def test_variables_beyond_the_table_are_validated_too(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({**BASIC, variable: value})
    assert raised.value.variable == variable


def test_the_first_malformed_variable_is_the_one_named() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({**BASIC, "JIRA_MAX_IN_FLIGHT": "0", "JIRA_SENSOR_INTERVAL_S": "1"})
    assert raised.value.variable == "JIRA_MAX_IN_FLIGHT"
    assert "JIRA_SENSOR_INTERVAL_S" not in str(raised.value)


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings(BASIC)
    assert settings.auth_mode == "basic" and settings.api_token is not None
    assert settings.api_token.get_secret_value() == TOKEN
    assert (settings.min_request_interval_ms, settings.max_in_flight) == (200, 4)
    assert (settings.timeout_s, settings.retry_attempts) == (30.0, 6)
    assert (settings.retry_base_s, settings.retry_cap_s) == (1.0, 60.0)
    assert settings.sync_start_date == date(2020, 1, 1) and settings.projects == ()
    assert settings.lookback == timedelta(minutes=10)
    assert settings.consistency_lag == timedelta(minutes=15)
    assert settings.schedule_cron == "0 2 * * *" and settings.sensor_interval_s == 300
    assert settings.freshness_tolerance == timedelta(minutes=120)
    assert settings.mongodb_database == "jira" and settings.mongodb_uri is None
    assert settings.verify_tls is True and settings.deployment is None


def test_values_are_parsed_into_what_the_code_uses() -> None:
    settings = load_settings({
        **BASIC, "JIRA_BASE_URL": f"{SITE}/", "JIRA_PROJECTS": " ENG,OPS , ENG,",
        "JIRA_LOOKBACK_MINUTES": "3", "JIRA_CONSISTENCY_LAG_MINUTES": "0",
        "JIRA_TIMEOUT_S": "2.5", "JIRA_VERIFY_TLS": "no", "JIRA_DEPLOYMENT": "datacenter",
    })  # fmt: skip
    assert settings.base_url == SITE
    assert settings.projects == ("ENG", "OPS")
    assert settings.lookback == timedelta(minutes=3) and settings.consistency_lag == timedelta(0)
    assert settings.timeout_s == 2.5 and settings.verify_tls is False
    assert settings.deployment == "datacenter"


def test_blank_values_mean_unset() -> None:
    settings = load_settings({**BASIC, "JIRA_PAT": "  ", "JIRA_SCHEDULE_CRON": "",
                              "JIRA_MAX_IN_FLIGHT": " \t", "JIRA_OAUTH_CLIENT_ID": " "})
    assert settings.pat is None and settings.auth_mode == "basic"
    assert settings.schedule_cron == "0 2 * * *" and settings.max_in_flight == 4


def test_secrets_never_appear_in_repr_str_or_a_dump() -> None:
    secrets = {"JIRA_API_TOKEN": "tok-SECRET-123", "JIRA_PAT": "pat-SECRET-7",
               "JIRA_OAUTH_CLIENT_SECRET": "oauth-SECRET-9",
               "JIRA_PIPELINE_FERNET_KEYS": FERNET_KEY,
               "MONGODB_URI": "mongodb://user:mongo-SECRET-1@db.example:27017/"}  # fmt: skip
    settings = load_settings({**BASIC, "JIRA_OAUTH_CLIENT_ID": "cid", **secrets})
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        for secret in (*secrets.values(), "mongo-SECRET-1"):
            assert secret not in text


def test_pat_selects_data_center_bearer_auth() -> None:
    settings = load_settings({"JIRA_BASE_URL": "https://jira.acme.test", "JIRA_PAT": "pat-1"})
    assert settings.auth_mode == "pat"


def test_oauth_endpoints_are_configurable_with_atlassian_defaults() -> None:
    oauth = {"JIRA_OAUTH_CLIENT_ID": "cid", "JIRA_OAUTH_CLIENT_SECRET": "s",
             "JIRA_CLOUD_ID": CLOUD_ID}  # fmt: skip
    default = load_settings(oauth).oauth_endpoints
    assert default.token_url == "https://auth.atlassian.com/oauth/token"
    assert default.api_base == "https://api.atlassian.com/ex/jira/{cloudId}"
    custom = load_settings({**oauth, "JIRA_OAUTH_TOKEN_URL": "http://127.0.0.1:9/oauth/token"})
    assert custom.oauth_endpoints.token_url == "http://127.0.0.1:9/oauth/token"
    origin = load_settings({**oauth, "JIRA_OAUTH_ORIGIN": "http://127.0.0.1:9"})
    assert origin.oauth_endpoints.accessible_resources_url == (
        "http://127.0.0.1:9/oauth/token/accessible-resources"
    )
    assert load_settings(oauth).auth_mode == "oauth"


def test_an_oauth_cloud_id_is_kept_as_given_and_a_bad_one_is_shown() -> None:
    oauth = {"JIRA_OAUTH_CLIENT_ID": "cid", "JIRA_OAUTH_CLIENT_SECRET": "s"}
    cloud_id = CLOUD_ID.upper()
    assert load_settings({**oauth, "JIRA_CLOUD_ID": cloud_id}).cloud_id == cloud_id
    with pytest.raises(ConfigurationError) as raised:
        load_settings({**oauth, "JIRA_CLOUD_ID": "acme.atlassian.net"})
    assert str(raised.value).startswith("JIRA_CLOUD_ID must be a UUID")
    assert "acme.atlassian.net" in str(raised.value)


def test_dotenv_in_the_working_directory_is_read_beneath_the_environment(
    clean_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        f"JIRA_BASE_URL={SITE}\nJIRA_EMAIL=from@dotenv.test\nJIRA_API_TOKEN=t\n"
        "JIRA_LOOKBACK_MINUTES=7\nJIRA_SENSOR_INTERVAL_S=45\nUNRELATED=ignored\n"
    )
    monkeypatch.setenv("JIRA_EMAIL", "env@wins.test")
    monkeypatch.setenv("JIRA_SENSOR_INTERVAL_S", " ")  # blank: unset, and .env does not fill it

    settings = load_settings()

    assert settings.base_url == SITE and settings.email == "env@wins.test"
    assert settings.lookback == timedelta(minutes=7)
    assert settings.sensor_interval_s == 300


def test_a_changed_environment_is_read_again(
    clean_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().lookback == timedelta(minutes=10)
    monkeypatch.setenv("JIRA_LOOKBACK_MINUTES", "4")
    assert load_settings().lookback == timedelta(minutes=4)
    (tmp_path / ".env").write_text("JIRA_CONSISTENCY_LAG_MINUTES=9\n")
    assert load_settings().consistency_lag == timedelta(minutes=9)


def test_a_cron_schedule_the_settings_accept_is_the_schedule_dagster_runs(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(monkeypatch, {**BASIC, "JIRA_SCHEDULE_CRON": "15 4 * * 1-5"})

    schedule = build_definitions().resolve_schedule_def("jira_daily_schedule")

    assert schedule.cron_schedule == "15 4 * * 1-5"


def test_a_resource_takes_the_models_defaults_and_names_a_bad_value_by_variable() -> None:
    resource = JiraResource(base_url=SITE, email="me@acme.test", api_token=TOKEN)
    settings = resource.settings()
    model_defaults = load_settings(BASIC)
    assert settings.client_tuning() == model_defaults.client_tuning()
    assert settings.auth_mode == "basic" and settings.base_url == SITE

    tuned = JiraResource(base_url=f"{SITE}/", pat="pat-1", deployment="datacenter",
                         max_in_flight=9).settings()  # fmt: skip
    assert tuned.max_in_flight == 9 and tuned.auth_mode == "pat" and tuned.base_url == SITE

    with pytest.raises(ConfigurationError) as raised:
        JiraResource(base_url=SITE, pat="pat-1", max_in_flight=0).settings()
    assert raised.value.variable == "JIRA_MAX_IN_FLIGHT"

