"""`jira_pipeline.JiraSite`: a Jira site declared as a Dagster Component in a `defs.yaml`.

```yaml
type: jira_pipeline.JiraSite
attributes:
  name: acme
  base_url: "{{ env.ACME_JIRA_URL }}"
  email: "{{ env.ACME_JIRA_EMAIL }}"
  api_token: "{{ env.ACME_JIRA_TOKEN }}"   # Cloud basic auth; or `pat:` for Data Center
  projects: [ENG, OPS]
```

The site gets the same assets, checks, jobs, schedule and sensor as a connection registered in
`jira_connections` (keys prefixed by its name, `acme/jira_issues` in group `jira_acme`), built by
the same builder. Credentials stay references: the component keeps the `{{ env.VAR }}` text and
hands the resource a `dg.EnvVar`, so no secret is held in the component, its metadata, the run
config the UI shows, or a log line.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

import dagster as dg
from pydantic import BaseModel, Field, PrivateAttr

from jira_pipeline.settings import ConfigurationError, PipelineSettings, load_settings
from jira_pipeline.storage.entities import JIRA_PIPELINE_NAMESPACE
from jira_pipeline.storage.resources import MongoResource

# A site name becomes an asset key prefix, a group (`jira_<name>`) and a resource key.
_SITE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# `{{ env.VAR }}` or `{{ env('VAR') }}`: the only way a credential may be written.
_ENV_REFERENCE = re.compile(
    r"""\{\{\s*env(?:\.(?P<attr>[A-Za-z_][A-Za-z0-9_]*)|\(\s*['"](?P<call>[^'"]+)['"]\s*\))\s*\}\}"""
)


@dataclass(frozen=True)
class SiteLoad:
    """What every site of one code-location load shares: the settings read once, the one
    `MongoResource` and its IO manager (Dagster merges definitions only when their resources are
    the same objects)."""

    settings: PipelineSettings
    mongo: MongoResource
    io_manager: dg.ConfigurableIOManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from jira_pipeline.storage.io_manager import MongoUpsertIOManager

        object.__setattr__(self, "io_manager", MongoUpsertIOManager(mongo=self.mongo))

    def shared_resources(self) -> dict[str, Any]:
        return {"mongo": self.mongo, "mongo_io_manager": self.io_manager}


_ACTIVE_LOAD: ContextVar[SiteLoad | None] = ContextVar("jira_pipeline_site_load", default=None)


@contextmanager
def site_load(load: SiteLoad) -> Iterator[SiteLoad]:
    """Make `load` the one the JiraSite components built inside this block share."""
    token = _ACTIVE_LOAD.set(load)
    try:
        yield load
    finally:
        _ACTIVE_LOAD.reset(token)


def configuration_error_in(error: BaseException) -> ConfigurationError | None:
    """The `ConfigurationError` behind what Dagster raised while loading a component (it wraps
    each in exceptions of its own, with the component tree as their message)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConfigurationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def current_site_load() -> SiteLoad:
    """The active load, or (a component loaded on its own, outside `jira_pipeline.definitions`)
    a new one from the environment."""
    return _ACTIVE_LOAD.get() or SiteLoad(settings=load_settings(), mongo=MongoResource())


def env_reference(raw: str) -> str | None:
    """The variable of a `{{ env.VAR }}` template, or None for any other text."""
    match = _ENV_REFERENCE.fullmatch(raw.strip())
    return (match.group("attr") or match.group("call")) if match else None


def _credential(attribute: str, *, literal_allowed: bool) -> Any:
    """A resolver that keeps the `{{ env.VAR }}` text (checked: the variable is set) instead
    of the value, so the value is read only where the resource is used."""

    def resolve(context: dg.ResolutionContext, raw: Any) -> str | None:
        if raw is None:
            return None
        text = str(raw)
        variable = env_reference(text)
        where = _declaring_file(context)
        if variable is None:
            if not literal_allowed:
                raise ConfigurationError(
                    attribute,
                    f"must be written as an environment variable reference in {where}, e.g. "
                    f'"{{{{ env.ACME_JIRA_{attribute.upper()} }}}}": a secret written there '
                    "would be shown by the Dagster UI",
                )
            return text
        if not os.environ.get(variable, "").strip():
            raise ConfigurationError(
                variable, f"is not set, but `{attribute}` of the Jira site in {where} reads it"
            )
        return text

    return dg.Resolver(resolve, model_field_type=str, inject_before_resolve=False)


def _declaring_file(context: dg.ResolutionContext) -> str:
    tree = context.source_position_tree
    return str(tree.position.filename) if tree is not None else "defs.yaml"


def _resolved(raw: str | None) -> str | None:
    """The value a kept `{{ env.VAR }}` text stands for (a literal stands for itself)."""
    if raw is None:
        return None
    variable = env_reference(raw)
    return os.environ[variable] if variable is not None else raw


def _as_resource_value(raw: str | None) -> str | None:
    """A kept reference as `dg.EnvVar` (the UI shows the variable's name, never its value)."""
    if raw is None:
        return None
    variable = env_reference(raw)
    return dg.EnvVar(variable) if variable is not None else raw


class JiraSite(dg.Component, dg.Model, dg.Resolvable):
    """A Jira site synced into MongoDB: projects, statuses, users and daily-partitioned issues,
    with their checks, jobs, daily schedule and refresh sensor.

    Cloud sites authenticate with `email` and `api_token`, Data Center sites with `pat`; each
    credential must be an `{{ env.VAR }}` reference.
    """

    name: str = Field(
        description="the site's name: its asset keys are prefixed by it (`acme/jira_issues`), "
        "its group is `jira_<name>`"
    )
    base_url: Annotated[str, _credential("base_url", literal_allowed=True)] = Field(
        description="the site's URL, e.g. https://acme.atlassian.net"
    )
    email: Annotated[str | None, _credential("email", literal_allowed=True)] = Field(
        default=None, description="Cloud API-token auth: the account's email"
    )
    api_token: Annotated[str | None, _credential("api_token", literal_allowed=False)] = Field(
        default=None, description='Cloud API token, as "{{ env.VAR }}"'
    )
    pat: Annotated[str | None, _credential("pat", literal_allowed=False)] = Field(
        default=None, description='Data Center personal access token, as "{{ env.VAR }}"'
    )
    projects: Sequence[str] | None = Field(
        default=None, description="project keys to sync; default: every project the account sees"
    )

    # The defs.yaml this site was declared in (None when built in Python).
    _declared_in: Path | None = PrivateAttr(default=None)

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        site = super().load(attributes, context)
        site._declared_in = context.path / "defs.yaml"
        return site

    @property
    def declared_in(self) -> Path | None:
        return self._declared_in

    def site_settings(self, settings: PipelineSettings) -> PipelineSettings:
        """`settings` with this site's URL, credentials and projects, validated: a problem
        names the setting (a malformed URL: `base_url`)."""
        self._check_name()
        values = {
            "base_url": _resolved(self.base_url),
            "email": _resolved(self.email),
            "api_token": _resolved(self.api_token),
            "pat": _resolved(self.pat),
            "projects": ",".join(self.projects or ()),
        }
        try:
            checked = PipelineSettings.of(values)
            checked.check_credentials()
        except ConfigurationError as error:
            # Name what to fix: the variable the attribute reads, else the attribute.
            attribute = _ATTRIBUTES.get(error.variable, error.variable)
            raw = getattr(self, attribute, None)
            variable = env_reference(raw) if isinstance(raw, str) else None
            raise ConfigurationError(
                variable or attribute,
                f"{error.problem} (`{attribute}` of Jira site {self.name!r})",
            ) from None
        return settings.model_copy(update={"projects": checked.projects})

    def connection_id(self) -> str:
        """Stable for a name and URL: the same declaration always writes the same documents,
        and no two sites share documents even when they read one Jira."""
        url = (_resolved(self.base_url) or "").rstrip("/").lower()
        return str(uuid.uuid5(JIRA_PIPELINE_NAMESPACE, f"component:{self.name}:{url}"))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from jira_pipeline.assets.factory import build_site_definitions
        from jira_pipeline.assets.resources import JiraResource
        from jira_pipeline.assets.sites import JiraSite as Site

        load = current_site_load()
        try:
            settings = self.site_settings(load.settings)
        except ConfigurationError as error:
            where = self._declared_in or context.path / "defs.yaml"
            raise ConfigurationError(error.variable, f"{error.problem} in {where}") from None
        resource = JiraResource(
            base_url=_as_resource_value(self.base_url),
            email=_as_resource_value(self.email),
            api_token=_as_resource_value(self.api_token),
            pat=_as_resource_value(self.pat),
            deployment="datacenter" if self.pat is not None else None,
            **settings.client_tuning(),
            mongo=load.mongo,
        )
        site = Site(name=self.name, connection_id=self.connection_id(), resource=resource,
                    prefixed=True)
        return dg.Definitions.merge(
            build_site_definitions(site, settings),
            dg.Definitions(resources=load.shared_resources()),
        )

    def _check_name(self) -> None:
        if not _SITE_NAME.fullmatch(self.name):
            raise ConfigurationError(
                "name", f"of a Jira site must be letters, digits and `_`, got {self.name!r}"
            )


_ATTRIBUTES = {"JIRA_BASE_URL": "base_url", "JIRA_EMAIL": "email", "JIRA_API_TOKEN": "api_token",
               "JIRA_PAT": "pat", "JIRA_PROJECTS": "projects"}

