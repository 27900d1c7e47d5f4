"""JiraSettings from environment variables: one clear error per missing or malformed value."""

import pytest

from jira_pipeline.jira._exceptions import JiraConfigError
from jira_pipeline.jira.config import JiraSettings
from jira_pipeline.settings import load_dotenv_once

BASIC = {"JIRA_BASE_URL": "https://acme.atlassian.net", "JIRA_EMAIL": "me@acme.test",
         "JIRA_API_TOKEN": "tok-SECRET-123"}


def test_basic_auth_settings_with_defaults():
    settings = JiraSettings.from_env(BASIC)
    assert settings.auth_mode == "basic"
    assert settings.min_request_interval_ms == 200 and settings.max_in_flight == 4
    assert settings.timeout_s == 30.0 and settings.verify_tls is True
    assert settings.api_token.get_secret_value() == "tok-SECRET-123"


def test_secrets_never_appear_in_repr_or_str():
    env = {**BASIC, "JIRA_OAUTH_CLIENT_ID": "cid", "JIRA_OAUTH_CLIENT_SECRET": "oauth-SECRET-9",
           "JIRA_PAT": "pat-SECRET-7"}
    settings = JiraSettings.from_env(env)
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        for secret in ("tok-SECRET-123", "oauth-SECRET-9", "pat-SECRET-7"):
            assert secret not in text


@pytest.mark.parametrize(
    ("missing", "named"),
    [("JIRA_BASE_URL", "JIRA_BASE_URL"), ("JIRA_EMAIL", "JIRA_EMAIL"),
     ("JIRA_API_TOKEN", "JIRA_API_TOKEN")],
)
def test_a_missing_variable_is_named(missing, named):
    env = {k: v for k, v in BASIC.items() if k != missing}
    with pytest.raises(JiraConfigError) as raised:
        JiraSettings.from_env(env)
    assert raised.value.variable == named and str(raised.value).startswith(named)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("JIRA_BASE_URL", "acme.atlassian.net"), ("JIRA_MIN_REQUEST_INTERVAL_MS", "fast"),
     ("JIRA_MIN_REQUEST_INTERVAL_MS", "-5"), ("JIRA_MAX_IN_FLIGHT", "0"),
     ("JIRA_TIMEOUT_S", "abc"), ("JIRA_DEPLOYMENT", "server"), ("JIRA_VERIFY_TLS", "maybe"),
     ("JIRA_CLOUD_ID", "acme"), ("JIRA_CLOUD_ID", "1324a887-45db-1bf4-1e99-ef0ff456d42")],
)
def test_a_malformed_variable_is_named(variable, value):
    with pytest.raises(JiraConfigError) as raised:
        JiraSettings.from_env({**BASIC, variable: value})
    assert raised.value.variable == variable


def test_malformed_secret_values_are_not_echoed():
    env = {**BASIC, "JIRA_OAUTH_CLIENT_SECRET": "oauth-SECRET-9"}
    with pytest.raises(JiraConfigError) as raised:
        JiraSettings.from_env(env)
    assert "JIRA_OAUTH_CLIENT_ID" in str(raised.value)
    assert "oauth-SECRET-9" not in str(raised.value)


def test_pat_selects_data_center_bearer_auth():
    settings = JiraSettings.from_env({"JIRA_BASE_URL": "https://jira.acme.test",
                                      "JIRA_PAT": "pat-1"})
    assert settings.auth_mode == "pat"


def test_oauth_endpoints_are_configurable_with_atlassian_defaults():
    env = {"JIRA_OAUTH_CLIENT_ID": "cid", "JIRA_OAUTH_CLIENT_SECRET": "s",
           "JIRA_CLOUD_ID": "1324a887-45db-1bf4-1e99-ef0ff456d421"}
    default = JiraSettings.from_env(env).oauth_endpoints
    assert default.token_url == "https://auth.atlassian.com/oauth/token"
    assert default.api_base == "https://api.atlassian.com/ex/jira/{cloudId}"
    custom = JiraSettings.from_env({**env, "JIRA_OAUTH_TOKEN_URL": "http://127.0.0.1:9/oauth/token"})
    assert custom.oauth_endpoints.token_url == "http://127.0.0.1:9/oauth/token"
    assert JiraSettings.from_env(env).auth_mode == "oauth"


def test_dotenv_file_is_read_beneath_the_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("JIRA_BASE_URL=https://from-dotenv.test\nJIRA_EMAIL=a@b.c\n"
                                   "JIRA_API_TOKEN=t\n")
    monkeypatch.chdir(tmp_path)
    for name in ("JIRA_BASE_URL", "JIRA_API_TOKEN", "JIRA_PAT", "JIRA_OAUTH_CLIENT_ID",
                 "JIRA_OAUTH_CLIENT_SECRET"):
        # set then delete: teardown removes whatever the .env file put there
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    monkeypatch.setenv("JIRA_EMAIL", "env@wins.test")
    load_dotenv_once.cache_clear()
    try:
        settings = JiraSettings.from_env()
    finally:
        load_dotenv_once.cache_clear()
    assert settings.base_url == "https://from-dotenv.test" and settings.email == "env@wins.test"


def test_an_oauth_cloud_id_must_be_a_uuid_and_is_kept_as_given():
    oauth = {"JIRA_OAUTH_CLIENT_ID": "cid", "JIRA_OAUTH_CLIENT_SECRET": "s"}
    cloud_id = "1324A887-45db-1bf4-1e99-ef0ff456d421"
    assert JiraSettings.from_env({**oauth, "JIRA_CLOUD_ID": cloud_id}).cloud_id == cloud_id
    with pytest.raises(JiraConfigError) as raised:
        JiraSettings.from_env({**oauth, "JIRA_CLOUD_ID": "acme.atlassian.net"})
    assert str(raised.value).startswith("JIRA_CLOUD_ID must be a UUID")
    assert "acme.atlassian.net" in str(raised.value)
