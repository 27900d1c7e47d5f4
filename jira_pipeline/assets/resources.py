"""`JiraResource`: a Jira site as a Dagster resource, handing each run one rate-limited client."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr, SecretStr

from jira_pipeline.assets.progress import WalkProgress
from jira_pipeline.jira import (
    ClientCounters,
    JiraClient,
    OAuthTokens,
    Submitted,
    iterate_blocking,
    run_sync,
    shared_loop,
    start_in_background,
)
from jira_pipeline.settings import ConfigurationError, PipelineSettings
from jira_pipeline.storage.connections import (
    ConnectionRepository,
    JiraConnectionError,
    make_token_loader,
    make_token_persister,
)
from jira_pipeline.storage.resources import MongoResource

T = TypeVar("T")


class JiraResource(dg.ConfigurableResource):
    """One Jira site. Secrets arrive through `dg.EnvVar` (or, for connections registered in
    `jira_connections`, decrypted from MongoDB), so the UI's run config never shows them.

    The client is created on first use in a run and closed when the run ends: every asset and
    check of a run shares its connection pool, its rate limiter and its counters.
    """

    base_url: str | None = Field(default=None, description="site URL (not needed for OAuth)")
    email: str | None = Field(default=None, description="Cloud API-token auth: account email")
    api_token: str | None = Field(default=None, description="Cloud API token (use dg.EnvVar)")
    pat: str | None = Field(default=None, description="Data Center personal access token")
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = Field(default=None, description="use dg.EnvVar")
    cloud_id: str | None = None
    oauth_origin: str | None = Field(
        default=None,
        description="serve every OAuth endpoint from this origin (a stand-in such as the fake "
        "Jira); default: Atlassian's endpoints",
    )
    connection_id: str | None = Field(
        default=None,
        description="a connection in jira_connections whose stored (encrypted) tokens to use",
    )
    deployment: str | None = Field(default=None, description="cloud or datacenter")
    # Pacing, timeout and retries; unset takes the settings model's default.
    min_request_interval_ms: int | None = None
    max_in_flight: int | None = None
    timeout_s: float | None = None
    retry_attempts: int | None = None
    retry_base_s: float | None = None
    retry_cap_s: float | None = None
    mongo: MongoResource | None = Field(
        default=None, description="where stored connection tokens live (OAuth, registered)"
    )

    _client: JiraClient | None = PrivateAttr(default=None)
    _guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def settings(self) -> PipelineSettings:
        """These fields as the client's settings (validated, each problem naming its variable);
        stored tokens are added by `get_client`."""
        fields = {
            "base_url": self.base_url,
            "email": self.email,
            "api_token": self.api_token,
            "pat": self.pat,
            "oauth_client_id": self.oauth_client_id,
            "oauth_client_secret": self.oauth_client_secret,
            "cloud_id": self.cloud_id,
            "oauth_origin": self.oauth_origin,
            "deployment": self.deployment,
            "min_request_interval_ms": self.min_request_interval_ms,
            "max_in_flight": self.max_in_flight,
            "timeout_s": self.timeout_s,
            "retry_attempts": self.retry_attempts,
            "retry_base_s": self.retry_base_s,
            "retry_cap_s": self.retry_cap_s,
        }
        return PipelineSettings.of(fields)

    def get_client(self) -> JiraClient:
        """This run's client, created on first use."""
        with self._guard:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> JiraClient:
        settings = self.settings()
        if self.connection_id is not None and settings.auth_mode != "oauth":
            settings = self._with_stored_secret(settings)
        if settings.auth_mode != "oauth":
            if settings.auth_mode == "basic" and not (settings.email and settings.api_token):
                raise ConfigurationError(
                    "JIRA_EMAIL", "and JIRA_API_TOKEN are needed for Jira Cloud API-token auth "
                    "(or set JIRA_PAT, or an OAuth connection)"
                )
            return JiraClient.from_settings(settings)
        if self.connection_id is None or self.mongo is None:
            raise ConfigurationError(
                "JIRA_OAUTH_CLIENT_ID", "is set, but no OAuth connection is registered: run "
                "`jira-pipeline connections add NAME --auth-type oauth ...` first"
            )
        tokens = self._stored_tokens()
        if tokens is None:
            raise ConfigurationError(
                "JIRA_OAUTH_CLIENT_ID", f"is set, but connection {self.connection_id} has no "
                "stored refresh token: authorize it again with `jira-pipeline connections add`"
            )
        return JiraClient.from_settings(
            settings, tokens=tokens, on_tokens=self._save_tokens, load_tokens=self._stored_tokens
        )

    def _with_stored_secret(self, settings: PipelineSettings) -> PipelineSettings:
        """A registered API-token or PAT connection: its secret is decrypted only now."""
        assert self.connection_id is not None
        secret = self._repository().tokens(self.connection_id).access_token
        if not secret:
            raise JiraConnectionError(
                f"connection {self.connection_id} has no stored token: add one with "
                "`jira-pipeline connections add NAME --access-token-env VAR ...`"
            )
        if settings.deployment == "datacenter":
            return settings.model_copy(update={"pat": SecretStr(secret)})
        return settings.model_copy(update={"api_token": SecretStr(secret)})

    # The OAuth callbacks run on the client's event-loop thread; the embedded store's handles
    # belong to the thread that opened them, so each call asks the resource for this thread's.
    def _repository(self) -> ConnectionRepository:
        assert self.mongo is not None and self.connection_id is not None
        return ConnectionRepository(self.mongo.get_database())

    def _stored_tokens(self) -> OAuthTokens | None:
        """The tokens stored now: another process may have rotated them since we last looked."""
        assert self.connection_id is not None
        return make_token_loader(self._repository(), self.connection_id)()

    def _save_tokens(self, tokens: OAuthTokens) -> None:
        """Persist a rotated grant before it is used, guarded by the refresh token it replaced."""
        assert self.connection_id is not None
        make_token_persister(self._repository(), self.connection_id)(tokens)

    def run(self, coroutine_factory: Callable[[JiraClient], Coroutine[Any, Any, T]]) -> T:
        """Run one coroutine against the client from synchronous code."""
        client = self.get_client()
        return run_sync(coroutine_factory(client))

    def start(
        self, coroutine_factory: Callable[[JiraClient], Coroutine[Any, Any, T]]
    ) -> Submitted[T]:
        """Start one coroutine against the client now, from synchronous code; `wait()` for
        it later (the caller goes on meanwhile), or `cancel_and_wait()`."""
        client = self.get_client()
        return start_in_background(coroutine_factory(client))

    def iterate(
        self,
        async_iterable_factory: Callable[[JiraClient], AsyncIterable[T]],
        *,
        max_buffered: int = 100,
        progress: WalkProgress | None = None,
        size: Callable[[T], int] | None = None,
    ) -> Iterator[T]:
        """Iterate an async walk of the client from sync code, with bounded buffering (by
        default a page of issues: ~4 MB with changelogs; 256 held ~10 MB for no speed); with
        `progress`, a long walk logs how far it is (`size`: how many issues an item holds)."""
        client = self.get_client()
        items = iterate_blocking(lambda: async_iterable_factory(client), max_buffered=max_buffered)
        return items if progress is None else progress.watch(items, size)

    def walk_progress(
        self, log: Any, what: str, *, jql: str | None = None, total: int | None = None
    ) -> WalkProgress:
        """A progress ticker for a walk of `jql` (Jira counts it once the walk is long) or of a
        known `total`."""
        if jql is None:
            return WalkProgress(log, what, count=total, counters=self.counters)
        query = jql
        return WalkProgress(
            log, what, count=lambda: self.count_in_background(query), counters=self.counters
        )

    def count_in_background(self, jql: str) -> Future[int]:
        """Jira's count of `jql` (Cloud approximate-count, Data Center a search's `total`), sent
        now on the client's loop while the caller goes on."""
        client = self.get_client()
        return shared_loop().submit(client.count_issues(jql))

    def counters(self) -> ClientCounters:
        return self.get_client().counters

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._guard:
            client, self._client = self._client, None
        if client is not None:
            run_sync(client.aclose())


def counter_delta(before: ClientCounters, after: ClientCounters) -> dict[str, float]:
    """What the client spent between two snapshots (one asset's share of a shared client)."""
    start, end = before.as_dict(), after.as_dict()
    return {name: round(end[name] - start[name], 3) for name in end}
