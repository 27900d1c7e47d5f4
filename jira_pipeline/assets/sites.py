"""The Jira sites this code location syncs, and how each one's Dagster objects are named."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dagster as dg
from pydantic import SecretStr

from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.jira import JiraClient
from jira_pipeline.settings import ConfigurationError, PipelineSettings, variable_of
from jira_pipeline.storage.connections import Connection, ConnectionRepository, JiraConnectionError
from jira_pipeline.storage.crypto import TokenCipher
from jira_pipeline.storage.entities import JIRA_PIPELINE_NAMESPACE
from jira_pipeline.storage.resources import MongoResource

DEFAULT_GROUP = "jira"
# The resource the registered sites' assets share (site_resource.JiraSitesResource).
SHARED_RESOURCE_KEY = "jira_sites"
# Settings of the environment's site that are secrets: resources get them as `dg.EnvVar`.
_SECRET_FIELDS = ("email", "api_token", "pat")

@dataclass(frozen=True)
class JiraSite:
    """One Jira site: its stable connection id and the names of its assets, jobs and resource.

    The site configured by environment variables keeps the plain names (`jira_issues` in group
    `jira`); each connection registered in `jira_connections` gets its own group and its keys are
    prefixed by its name (`acme/jira_issues` in group `jira_acme`), so adding a site never
    renames the assets (and their history) of another.
    """

    name: str
    connection_id: str
    resource: JiraResource | None = field(default=None, compare=False)
    prefixed: bool = False
    # A site registered in jira_connections: its resource is built only when a run or a tick
    # uses it (`build_resource`), and its assets reach it through the one resource the
    # registered sites share (`SHARED_RESOURCE_KEY`, see site_resource.py): a Dagster resource
    # per site cost the load some 30 ms of CPU a site to build and a share of every job's run
    # config schema.
    build_resource: Callable[[], JiraResource] | None = field(default=None, compare=False)
    # The client the refresh sensor polls with, opened without a resource (whose Dagster
    # set-up was most of a many-sites tick); None: the sensor opens it through the resource.
    open_client: Callable[[], JiraClient] | None = field(default=None, compare=False)

    @cached_property
    def jira_resource(self) -> JiraResource:
        """The site's resource: as given, or built (once) from its registration."""
        if self.resource is not None:
            return self.resource
        assert self.build_resource is not None, f"site {self.name} has no Jira resource"
        return self.build_resource()

    @property
    def shared_resource(self) -> bool:
        """Whether the site's assets reach its resource through the registered sites' one."""
        return self.resource is None

    def asset_key(self, base: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, base]) if self.prefixed else dg.AssetKey(base)

    @property
    def group_name(self) -> str:
        return f"{DEFAULT_GROUP}_{self.name}" if self.prefixed else DEFAULT_GROUP

    @property
    def resource_key(self) -> str:
        if self.shared_resource:
            return SHARED_RESOURCE_KEY
        return f"jira_{self.name}" if self.prefixed else "jira"

    def object_name(self, base: str) -> str:
        """A job, schedule or sensor name, unique across sites."""
        return f"{self.name}_{base}" if self.prefixed else base

    @property
    def pool(self) -> str:
        """The concurrency pool of this site's issue syncs (one run at a time, see dagster.yaml)."""
        return f"jira_issues-{self.name}"

    @property
    def run_tags(self) -> dict[str, str]:
        """Tags of every run of this site: dagster.yaml bounds the runs per `jira/connection`."""
        return {"jira/connection": self.name}

    @property
    def issue_run_tags(self) -> dict[str, str]:
        """Tags of runs that sync this site's issues: dagster.yaml allows one per `jira/issues`
        value. The tag limit holds from the first run on; the pool (which Dagster creates on
        first sight, after letting that pass's runs through) also covers runs launched ad hoc."""
        return {**self.run_tags, "jira/issues": self.name}


def environment_site(mongo: MongoResource, settings: PipelineSettings) -> JiraSite | None:
    """The site of the JIRA_* variables (validated when the settings loaded)."""
    if not settings.configures_a_site:
        return None
    if settings.auth_mode == "oauth":
        # OAuth tokens live in jira_connections: such a site is a registered connection.
        return None
    assert settings.base_url is not None
    secrets: dict[str, Any] = {
        name: dg.EnvVar(variable_of(name))
        for name in _SECRET_FIELDS
        if getattr(settings, name) is not None
    }
    resource = JiraResource(
        base_url=dg.EnvVar("JIRA_BASE_URL"),
        deployment=settings.deployment,
        **secrets,
        **settings.client_tuning(),
        mongo=mongo,
    )
    return JiraSite(name="default", connection_id=site_connection_id(settings.base_url),
                    resource=resource)


def registered_site(
    connection: Connection, mongo: MongoResource, settings: PipelineSettings
) -> JiraSite:
    """A connection from `jira_connections`; its tokens stay encrypted in MongoDB until used."""
    if connection.has_tokens:
        # Its secrets are decrypted at every run: a missing or malformed key must stop the load
        # with a message naming JIRA_PIPELINE_FERNET_KEYS, not fail the first run hours later.
        TokenCipher.from_settings(settings)
    if connection.auth_type == "oauth":
        for name in ("oauth_client_id", "oauth_client_secret"):
            if getattr(settings, name) is None:
                raise ConfigurationError(
                    variable_of(name), f"is not set, but connection {connection.name!r} uses OAuth"
                )
    tuning = settings.client_tuning()
    oauth_origin = settings.oauth_origin

    def build_resource() -> JiraResource:
        common: dict[str, Any] = {"connection_id": connection.id, "mongo": mongo, **tuning}
        if connection.auth_type == "oauth":
            return JiraResource(
                oauth_client_id=dg.EnvVar("JIRA_OAUTH_CLIENT_ID"),
                oauth_client_secret=dg.EnvVar("JIRA_OAUTH_CLIENT_SECRET"),
                cloud_id=connection.cloud_id,
                oauth_origin=oauth_origin,
                **common,
            )
        return JiraResource(
            base_url=connection.site_url,
            email=connection.email,
            deployment="datacenter" if connection.auth_type == "pat" else None,
            **common,
        )

    def open_client() -> JiraClient:
        """What `build_resource().get_client()` opens for an API-token or PAT connection."""
        secret = ConnectionRepository(mongo.get_database()).tokens(connection.id).access_token
        if not secret:
            raise JiraConnectionError(
                f"connection {connection.id} has no stored token: add one with "
                "`jira-pipeline connections add NAME --access-token-env VAR ...`"
            )
        datacenter = connection.auth_type == "pat"
        return JiraClient.from_settings(_tuned(tuple(sorted(tuning.items()))).model_copy(update={
            "base_url": connection.site_url,
            "email": connection.email,
            "deployment": "datacenter" if datacenter else None,
            "pat" if datacenter else "api_token": SecretStr(secret),
        }))

    return JiraSite(name=connection.name, connection_id=connection.id, prefixed=True,
                    build_resource=build_resource,
                    open_client=open_client if connection.auth_type != "oauth" else None)


@functools.lru_cache(maxsize=8)
def _tuned(tuning: tuple[tuple[str, Any], ...]) -> PipelineSettings:
    """The client settings every registered site shares (validated once, not once a site)."""
    return PipelineSettings.of(dict(tuning))


def site_connection_id(base_url: str) -> str:
    """A stable id for the environment's site: the same URL always gives the same documents."""
    return str(uuid.uuid5(JIRA_PIPELINE_NAMESPACE, f"site:{base_url.rstrip('/').lower()}"))
