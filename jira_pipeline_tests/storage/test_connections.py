"""Encrypted connection records: the cipher, key rotation, token compare-and-set, and the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from jira_pipeline.cli import main as cli
from jira_pipeline.settings import ConfigurationError
from jira_pipeline.storage.connections import (
    ConnectionNotFoundError,
    ConnectionRepository,
    StaleRefreshTokenError,
    make_token_loader,
    make_token_persister,
)
from jira_pipeline.storage.crypto import (
    FERNET_KEYS_VARIABLE,
    TokenCipher,
    TokenDecryptError,
)
from jira_pipeline_tests.storage.conftest import Store

ACCESS = "atok-PLAINTEXT-access-4f1d9c"
REFRESH = "rtok-PLAINTEXT-refresh-77ab20"
EXPIRES = datetime(2026, 1, 15, 13, 0, tzinfo=UTC)


def _key() -> str:
    return Fernet.generate_key().decode()


def _repository(store: Store, *keys: str) -> ConnectionRepository:
    return ConnectionRepository(store.db, TokenCipher(list(keys) or [_key()]))


# --- the cipher ----------------------------------------------------------------------------------


def test_a_token_round_trips_and_the_ciphertext_does_not_contain_it() -> None:
    cipher = TokenCipher([_key()])

    encrypted = cipher.encrypt(ACCESS)

    assert ACCESS not in encrypted
    assert cipher.decrypt(encrypted) == ACCESS


def test_rotation_re_encrypts_with_the_newest_key_so_the_old_one_can_be_dropped() -> None:
    old, new = _key(), _key()
    encrypted_with_old = TokenCipher([old]).encrypt(ACCESS)

    rotated = TokenCipher([new, old]).rotate(encrypted_with_old)

    assert TokenCipher([new]).decrypt(rotated) == ACCESS
    with pytest.raises(TokenDecryptError):
        TokenCipher([new]).decrypt(encrypted_with_old)


def test_a_token_under_a_key_that_is_not_configured_fails_naming_the_variable() -> None:
    encrypted = TokenCipher([_key()]).encrypt(ACCESS)
    other = _key()

    with pytest.raises(TokenDecryptError, match=FERNET_KEYS_VARIABLE) as raised:
        TokenCipher([other]).decrypt(encrypted)

    assert other not in str(raised.value)


def test_a_missing_key_variable_fails_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=f"^{FERNET_KEYS_VARIABLE} is not set") as raised:
        TokenCipher.from_env({})
    assert raised.value.variable == FERNET_KEYS_VARIABLE


def test_an_invalid_key_fails_naming_the_variable_without_echoing_the_key() -> None:
    good, bad = _key(), "this-is-not-a-fernet-key-but-a-secret"

    with pytest.raises(ConfigurationError, match="holds key #2 of 2") as raised:
        TokenCipher.from_env({FERNET_KEYS_VARIABLE: f"{good}, {bad}"})

    assert raised.value.variable == FERNET_KEYS_VARIABLE
    assert bad not in str(raised.value) and good not in str(raised.value)


# --- the repository ------------------------------------------------------------------------------


def test_a_connection_is_stored_with_encrypted_tokens_and_read_back(store: Store) -> None:
    repository = _repository(store)

    added = repository.add(
        "acme",
        "https://acme.atlassian.net/",
        cloud_id="cloud-1",
        access_token=ACCESS,
        refresh_token=REFRESH,
        token_expires_at=EXPIRES,
    )

    document = store.db.jira_connections.find_one({"id": added.id})
    assert document["_id"].version == 4 and str(document["_id"]) == added.id
    assert document["site_url"] == "https://acme.atlassian.net"
    assert ACCESS not in str(document) and REFRESH not in str(document)
    tokens = repository.tokens("acme")
    assert (tokens.access_token, tokens.refresh_token, tokens.expires_at) == (
        ACCESS, REFRESH, EXPIRES,
    )  # fmt: skip
    assert ACCESS not in repr(tokens)
    assert repository.get(added.id).has_tokens


def test_connections_are_listed_removed_and_unknown_ones_reported(store: Store) -> None:
    repository = _repository(store)
    repository.add("b-site", "https://b.example", auth_type="pat", access_token="pat")
    repository.add("a-site", "https://a.example")

    assert [c.name for c in repository.list()] == ["a-site", "b-site"]
    repository.remove("a-site")
    assert [c.name for c in repository.list()] == ["b-site"]
    with pytest.raises(ConnectionNotFoundError, match="a-site"):
        repository.get("a-site")


def test_a_rotated_refresh_token_is_saved_only_over_the_token_it_replaced(store: Store) -> None:
    repository = _repository(store)
    connection = repository.add("acme", "https://acme", refresh_token=REFRESH, access_token=ACCESS)
    # Two workers loaded the same refresh token and both refreshed it.
    first_worker = make_token_persister(repository, connection.id)
    second_worker = make_token_persister(repository, connection.id)

    first_worker("refresh-2", "access-2", EXPIRES)
    with pytest.raises(StaleRefreshTokenError, match="another process rotated it first"):
        second_worker("refresh-2-from-stale", "access-2-from-stale", EXPIRES)

    tokens = repository.tokens(connection.id)
    assert (tokens.refresh_token, tokens.access_token) == ("refresh-2", "access-2")
    # The winner keeps rotating from its own newest token.
    first_worker("refresh-3", "access-3", EXPIRES + timedelta(hours=1))
    assert repository.tokens(connection.id).refresh_token == "refresh-3"


def test_the_persister_accepts_the_oauth_clients_token_grant(store: Store) -> None:
    from jira_pipeline.jira.auth import OAuthTokens

    repository = _repository(store)
    connection = repository.add("acme", "https://acme", refresh_token=REFRESH, access_token=ACCESS)
    grant = OAuthTokens.from_token_response(
        {"access_token": "access-2", "refresh_token": "refresh-2", "expires_in": 3600}, EXPIRES
    )

    make_token_persister(repository, connection.id)(grant)

    tokens = repository.tokens(connection.id)
    assert (tokens.access_token, tokens.refresh_token) == ("access-2", "refresh-2")
    assert tokens.expires_at == EXPIRES + timedelta(hours=1)


def test_rotating_keys_re_encrypts_every_stored_token(store: Store) -> None:
    old, new = _key(), _key()
    _repository(store, old).add("a", "https://a", access_token=ACCESS, refresh_token=REFRESH)
    _repository(store, old).add("b", "https://b", auth_type="pat", access_token="pat-token")
    _repository(store, old).add("c", "https://c")  # no tokens

    rotation = _repository(store, new, old).rotate_keys()

    assert rotation.re_encrypted == 3
    assert (rotation.current, rotation.with_tokens, rotation.old_keys_needed) == (2, 2, False)
    only_new = _repository(store, new)
    assert only_new.tokens("a").refresh_token == REFRESH
    assert only_new.tokens("b").access_token == "pat-token"


class WorkerSavingDuringRotation(TokenCipher):
    """The rotating process's keys (newest first); each re-encryption first lets a worker that
    holds only the old key save freshly rotated tokens, which is the moment between rotate's
    read of a document and its write."""

    def __init__(self, keys: list[str], worker: Callable[..., None], *, saves: int) -> None:
        super().__init__(keys)
        self._worker = worker
        self.saves_left = saves
        self.saved: list[str] = []

    def rotate(self, token: str) -> str:
        rotated = super().rotate(token)
        if self.saves_left:
            self.saves_left -= 1
            refresh = f"refresh-from-old-key-worker-{len(self.saved) + 1}"
            self._worker(refresh, f"access-{len(self.saved) + 1}", EXPIRES)
            self.saved.append(refresh)
        return rotated


def test_rotate_retries_a_token_saved_mid_rotation_with_the_old_key(store: Store) -> None:
    old, new = _key(), _key()
    still_on_old_key = _repository(store, old)
    connection = still_on_old_key.add(
        "acme", "https://acme", access_token=ACCESS, refresh_token=REFRESH
    )
    worker = make_token_persister(still_on_old_key, connection.id)
    cipher = WorkerSavingDuringRotation([new, old], worker, saves=1)

    rotation = ConnectionRepository(store.db, cipher).rotate_keys()

    assert cipher.saved == ["refresh-from-old-key-worker-1"]
    # The worker's token was re-read and re-encrypted: the newest key alone opens it.
    tokens = _repository(store, new).tokens("acme")
    assert (tokens.refresh_token, tokens.access_token) == (cipher.saved[0], "access-1")
    assert rotation.retried == 1
    assert (rotation.current, rotation.with_tokens, rotation.old_keys_needed) == (1, 1, False)


def test_rotate_does_not_clear_old_keys_while_a_token_is_under_one(
    cli_env: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = os.environ[FERNET_KEYS_VARIABLE]
    new = _key()
    still_on_old_key = _repository(cli_env, old)
    acme = still_on_old_key.add("acme", "https://acme", access_token=ACCESS, refresh_token=REFRESH)
    still_on_old_key.add("beta", "https://beta", auth_type="pat", access_token="pat-token")
    # A worker that never got the new key list keeps rotating acme's tokens, each time first.
    worker = make_token_persister(still_on_old_key, acme.id)
    cipher = WorkerSavingDuringRotation([new, old], worker, saves=1_000)
    monkeypatch.setenv(FERNET_KEYS_VARIABLE, f"{new},{old}")
    monkeypatch.setattr(TokenCipher, "from_env", classmethod(lambda cls, environ=None: cipher))

    code = cli(["keys", "rotate"])

    captured = capsys.readouterr()
    assert code == 1
    assert "1 of 2 connection(s) holding tokens are under the newest key" in captured.out
    assert "can be removed" not in captured.out + captured.err
    assert "still hold a token under an older key (acme)" in captured.err
    assert "do not remove any key" in captured.err
    # Nothing was lost: the worker's latest token opens with the keys the CLI says to keep.
    assert _repository(cli_env, new, old).tokens("acme").refresh_token == cipher.saved[-1]
    assert _repository(cli_env, new).tokens("beta").access_token == "pat-token"
    assert new not in captured.out + captured.err and old not in captured.out + captured.err


def test_rotate_names_a_token_no_configured_key_opens_and_still_rotates_the_rest(
    store: Store,
) -> None:
    old, new, lost = _key(), _key(), _key()
    _repository(store, lost).add("orphan", "https://orphan", access_token=ACCESS)
    _repository(store, old).add("acme", "https://acme", access_token=ACCESS, refresh_token=REFRESH)

    rotation = _repository(store, new, old).rotate_keys()

    assert rotation.unreadable == ("orphan",) and rotation.behind == ()
    assert (rotation.current, rotation.with_tokens, rotation.old_keys_needed) == (1, 2, True)
    assert _repository(store, new).tokens("acme").refresh_token == REFRESH
    assert _repository(store, lost).tokens("orphan").access_token == ACCESS  # left as it was


def test_no_token_is_ever_written_to_disk_in_plaintext(store: Store) -> None:
    if store.folder is None:
        pytest.skip("a server's files are not on this machine")
    old, new = _key(), _key()
    repository = _repository(store, old)
    connection = repository.add("acme", "https://acme", access_token=ACCESS, refresh_token=REFRESH)
    make_token_persister(repository, connection.id)(REFRESH + "-next", ACCESS + "-next", EXPIRES)
    _repository(store, new, old).rotate_keys()

    files = [path for path in store.folder.rglob("*") if path.is_file()]
    assert any(path.name == "jira_connections" for path in files)
    for path in files:
        content = path.read_bytes()
        for secret in (ACCESS, REFRESH, ACCESS + "-next", REFRESH + "-next"):
            assert secret.encode() not in content, f"{secret} in {path}"


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Store:
    if store.folder is None:
        assert store.uri is not None
        monkeypatch.setenv("MONGODB_URI", store.uri)
    else:
        monkeypatch.setenv("DAGSTER_HOME", str(store.folder.parent))
    monkeypatch.setenv("MONGODB_DATABASE", store.name)
    monkeypatch.setenv(FERNET_KEYS_VARIABLE, _key())
    monkeypatch.chdir(tmp_path)
    return store


def test_cli_adds_lists_without_tokens_and_removes_connections(
    cli_env: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACME_ACCESS", ACCESS)
    monkeypatch.setenv("ACME_REFRESH", REFRESH)

    assert cli(["connections", "add", "acme", "--site-url", "https://acme.atlassian.net",
                "--access-token-env", "ACME_ACCESS", "--refresh-token-env", "ACME_REFRESH",
                "--cloud-id", "cloud-1"]) == 0  # fmt: skip
    assert cli(["connections", "list"]) == 0
    listing = capsys.readouterr().out
    assert "acme" in listing and "https://acme.atlassian.net" in listing and "stored" in listing
    assert ACCESS not in listing and REFRESH not in listing

    assert cli(["connections", "remove", "acme"]) == 0
    assert cli(["connections", "list", "--json"]) == 0
    assert "acme" not in capsys.readouterr().out.split("removed connection acme")[-1]


def test_cli_reports_a_missing_token_variable_by_name(
    cli_env: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(["connections", "add", "x", "--site-url", "https://x", "--access-token-env", "NOPE"])

    assert code == 1
    assert "NOPE is not set" in capsys.readouterr().err


def test_cli_generates_keys_and_rotation_reports_how_many_tokens_it_re_encrypted(
    cli_env: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACME_ACCESS", ACCESS)
    cli(["connections", "add", "acme", "--site-url", "https://a",
         "--access-token-env", "ACME_ACCESS"])  # fmt: skip
    old_keys = os.environ[FERNET_KEYS_VARIABLE]
    capsys.readouterr()

    assert cli(["keys", "generate"]) == 0
    new_key = capsys.readouterr().out.strip()
    TokenCipher([new_key])  # a valid key
    monkeypatch.setenv(FERNET_KEYS_VARIABLE, f"{new_key},{old_keys}")
    assert cli(["keys", "rotate"]) == 0

    out = capsys.readouterr().out
    assert "re-encrypted 1 token(s)" in out
    assert new_key not in out and old_keys not in out
    assert ConnectionRepository(cli_env.db, TokenCipher([new_key])).tokens("acme").access_token == (
        ACCESS
    )


def test_cli_rotation_with_a_bad_key_fails_naming_the_variable_only(
    cli_env: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(FERNET_KEYS_VARIABLE, "not-a-key-SECRETVALUE")

    assert cli(["keys", "rotate"]) == 1

    err = capsys.readouterr().err
    assert FERNET_KEYS_VARIABLE in err and "SECRETVALUE" not in err


# --- working with the Jira client's OAuth ------------------------------------------------------


def test_a_grant_is_saved_against_the_token_it_replaced_even_if_adopted_from_another_process(
    store: Store,
) -> None:
    from pydantic import SecretStr

    from jira_pipeline.jira.auth import OAuthTokens

    repository = _repository(store)
    connection = repository.add("acme", "https://acme", refresh_token=REFRESH, access_token=ACCESS)
    persist = make_token_persister(repository, connection.id)
    # Another process rotated REFRESH -> r2; this process adopted r2 and then rotated it.
    repository.save_tokens(connection.id, access_token="a2", refresh_token="r2",
                           expires_at=EXPIRES, previous_refresh_token=REFRESH)  # fmt: skip
    grant = OAuthTokens(SecretStr("a3"), SecretStr("r3"), EXPIRES,
                        previous_refresh_token=SecretStr("r2"))  # fmt: skip

    persist(grant)

    assert repository.tokens(connection.id).refresh_token == "r3"
    stale = OAuthTokens(SecretStr("a4"), SecretStr("r4"), EXPIRES,
                        previous_refresh_token=SecretStr("r2"))  # fmt: skip
    with pytest.raises(StaleRefreshTokenError):
        persist(stale)


def test_the_token_loader_hands_the_oauth_client_what_is_stored_now(store: Store) -> None:
    repository = _repository(store)
    connection = repository.add("acme", "https://acme", refresh_token=REFRESH, access_token=ACCESS,
                                token_expires_at=EXPIRES)  # fmt: skip
    empty = repository.add("empty", "https://empty")

    loaded = make_token_loader(repository, connection.id)()

    assert loaded.refresh_token.get_secret_value() == REFRESH
    assert loaded.access_token.get_secret_value() == ACCESS
    assert loaded.expires_at == EXPIRES
    assert make_token_loader(repository, empty.id)() is None


def test_cli_authorizes_an_oauth_connection_against_the_fake_jira(
    cli_env: Store, fake_jira, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    monkeypatch.setenv("JIRA_OAUTH_CLIENT_ID", fake_jira.config.oauth_client_id)
    monkeypatch.setenv("JIRA_OAUTH_CLIENT_SECRET", fake_jira.config.oauth_client_secret)

    def consent_in_a_browser(prompt: str) -> str:
        # Only the human is simulated: the authorize URL is followed over HTTP like a browser.
        url = next(line for line in prompt.splitlines() if line.startswith("http"))
        return httpx.get(url, follow_redirects=False).headers["location"]

    monkeypatch.setattr("builtins.input", consent_in_a_browser)

    code = cli(["connections", "add", "fake", "--site-url", fake_jira.base_url, "--authorize",
                "--oauth-origin", fake_jira.base_url])  # fmt: skip

    assert code == 0, capsys.readouterr().err
    repository = ConnectionRepository(cli_env.db)
    connection = repository.get("fake")
    assert connection.cloud_id == fake_jira.cloud_id and connection.auth_type == "oauth"
    tokens = repository.tokens("fake")
    assert tokens.refresh_token and tokens.access_token
    assert tokens.access_token not in capsys.readouterr().out
    # The stored tokens work: the fake accepts the access token.
    resources = httpx.get(
        f"{fake_jira.base_url}/oauth/token/accessible-resources",
        headers={"Authorization": f"Bearer {tokens.access_token}"},
    )
    assert resources.status_code == 200
