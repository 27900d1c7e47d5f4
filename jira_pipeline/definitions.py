"""The code location Dagster loads (`dagster dev -w workspace.yaml`, `dg dev`): `defs`, built
lazily when Dagster asks for it, never at import."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from jira_pipeline import heap
from jira_pipeline.settings import ConfigurationError, PipelineSettings
from jira_pipeline.storage.connections import Connection, ConnectionRepository

if TYPE_CHECKING:
    from jira_pipeline.component import JiraSite

PROJECT_PATH = Path(__file__).parent


@dg.definitions
def defs() -> dg.Definitions:
    """Every Jira site of this project: the environment's (JIRA_* variables), each connection
    registered in `jira_connections` and each `jira_pipeline.JiraSite` declared under
    `jira_pipeline/defs/`, with the MongoDB resources they share."""
    return load_project(PROJECT_PATH)


def load_project(path_within_project: Path) -> dg.Definitions:
    """The definitions of the dg project holding `path_within_project`: its defs folder merged
    with the environment's site and the registered connections.

    The environment is read once and `jira_connections` once; nothing asks Jira anything.
    A missing or malformed setting raises `ConfigurationError` naming it; two sites with one
    name fail naming both.
    """
    from jira_pipeline.assets.factory import assemble_definitions
    from jira_pipeline.assets.sites import environment_site, registered_site
    from jira_pipeline.component import SiteLoad, configuration_error_in, site_load
    from jira_pipeline.settings import load_settings
    from jira_pipeline.storage.resources import MongoResource

    global _last_build
    catalog = _serves_component_catalog()
    load = SiteLoad(settings=load_settings(), mongo=MongoResource())
    store = _store_identity(load.settings)
    connections, recorded = _registered_connections(
        store, lambda: ConnectionRepository(load.mongo.get_database())
    )
    # A pass that rebuilds what this process just built, from the same record in the same
    # environment, gets the same definitions (`dagster asset materialize` makes seven passes).
    key = (str(path_within_project.resolve()), store, json.dumps(_dump(connections)),
           tuple(sorted(os.environ.items())))
    if recorded and _last_build is not None and _last_build[0] == key:
        return _last_build[1]
    tree = dg.ComponentTree.for_project(path_within_project=path_within_project)
    with site_load(load):
        try:
            declared = list(_declared_sites(tree))
            _check_site_names(
                [(c.name, "a connection registered in jira_connections") for c in connections]
                + [(site.name, where) for site, where in declared]
            )
            with warnings.catch_warnings():
                # Dagster's defs-folder loader calls its own preview API
                # (load_definitions_from_module).
                warnings.simplefilter("ignore", dg.PreviewWarning)
                with _component_catalog(catalog):
                    folder = tree.build_defs()
        except Exception as error:
            # One message naming the setting, not Dagster's wrapping of it.
            problem = configuration_error_in(error)
            if problem is None or problem is error:
                raise
            raise ConfigurationError(problem.variable, problem.problem) from None
    sites = [registered_site(c, load.mongo, load.settings) for c in connections]
    environment = environment_site(load.mongo, load.settings)
    if environment is not None:
        sites.insert(0, environment)
    if not sites and not declared:
        raise ConfigurationError(
            "JIRA_BASE_URL",
            "is not set and no connection is registered in jira_connections: set JIRA_BASE_URL "
            "with JIRA_EMAIL and JIRA_API_TOKEN (or JIRA_PAT), register a connection with "
            "`jira-pipeline connections add`, declare a `jira_pipeline.JiraSite` in a defs.yaml, "
            "or try `jira-pipeline demo`",
        )
    defs = dg.Definitions.merge(
        assemble_definitions(sites, load.settings, load.shared_resources()), folder
    )
    _last_build = (key, defs)
    # What the process holds from here on is mostly these definitions and the imported modules:
    # keep the garbage collector's full passes off them (see jira_pipeline/heap.py).
    heap.freeze_after_load()
    return defs


_last_build: tuple[tuple[object, ...], dg.Definitions] | None = None


def _serves_component_catalog() -> bool:
    """Whether this load serves the UI (a code server's first load, which Dagster starts with a
    load context): only then is the catalog of installed component types worth building."""
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )

    return (DefinitionsLoadContext.is_set()
            and DefinitionsLoadContext.get().load_type == DefinitionsLoadType.INITIALIZATION)


@contextmanager
def _component_catalog(wanted: bool) -> Iterator[None]:
    """Every defs folder of the tree attaches to its definitions the JSON schema of each
    component type installed in the environment (the webserver's GraphQL lists them from the
    code server's snapshot): about 0.1 s of CPU a folder, spent again by every run worker and
    every CLI command, which never show it. Outside a code server's first load the folder gets
    the tree alone; its definitions are the same."""
    from dagster.components.core import load_defs

    if wanted:
        yield
        return
    enriched = load_defs.get_library_json_enriched_defs

    def tree_only(tree: dg.ComponentTree | None) -> dg.Definitions:
        return dg.Definitions(component_tree=tree)

    load_defs.get_library_json_enriched_defs = tree_only
    try:
        yield
    finally:
        load_defs.get_library_json_enriched_defs = enriched


# Reconstruction metadata: Dagster loads a code location once (INITIALIZATION) and rebuilds it
# from what that load recorded (RECONSTRUCTION: the CLI's second pass, every run worker), so
# `jira_connections` is read once per code-location load and never at a run's start.
_CONNECTIONS_KEY = "jira_pipeline/registered_connections"


def _registered_connections(
    store: str, repository: Callable[[], ConnectionRepository]
) -> tuple[list[Connection], bool]:
    """The registered connections, and whether they come from what this load's first pass
    recorded for the same store (else they are read from `jira_connections`, and recorded for
    the next pass)."""
    from dagster._core.definitions.definitions_load_context import (
        DefinitionsLoadContext,
        DefinitionsLoadType,
    )

    if not DefinitionsLoadContext.is_set():
        # Some commands (`dagster asset list`, `asset materialize`) call the function once
        # without a load context, then reconstruct: a context set here carries the record over.
        DefinitionsLoadContext.set(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION))
    context = DefinitionsLoadContext.get()
    recorded = (
        context.reconstruction_metadata.get(_CONNECTIONS_KEY)
        if context.load_type == DefinitionsLoadType.RECONSTRUCTION
        else None
    )
    record = json.loads(recorded) if isinstance(recorded, str) else None
    from_record = record is not None and record.get("store") == store
    if from_record:
        assert record is not None
        connections = _load(record["connections"])
    else:  # a first pass, or a context left over from loading another store
        connections = repository().list()
    context.add_to_pending_reconstruction_metadata(
        _CONNECTIONS_KEY, json.dumps({"store": store, "connections": _dump(connections)})
    )
    return connections, from_record


def _store_identity(settings: PipelineSettings) -> str:
    """Which store and database the connections were read from (a digest: a server URI may
    hold a password)."""
    from jira_pipeline.storage.client import embedded_store_folder

    uri = settings.mongodb_uri.get_secret_value() if settings.mongodb_uri else None
    where = uri or str(embedded_store_folder().resolve())
    return hashlib.sha256(f"{where}\n{settings.mongodb_database}".encode()).hexdigest()


def _dump(connections: Sequence[Connection]) -> list[dict[str, Any]]:
    """The connections as JSON values (they hold no token: tokens stay encrypted in MongoDB)."""
    return [
        {
            **dataclasses.asdict(connection),
            **{
                name: value.isoformat()
                for name, value in dataclasses.asdict(connection).items()
                if isinstance(value, datetime)
            },
        }
        for connection in connections
    ]


def _load(records: list[dict[str, Any]]) -> list[Connection]:
    def parsed(fields: dict[str, Any]) -> Connection:
        for name in ("token_expires_at", "created_at", "updated_at"):
            if fields.get(name) is not None:
                fields[name] = datetime.fromisoformat(fields[name])
        return Connection(**fields)

    return [parsed(dict(fields)) for fields in records]


def _declared_sites(tree: dg.ComponentTree) -> Iterator[tuple[JiraSite, str]]:
    """Each `jira_pipeline.JiraSite` under the defs folder, with the defs.yaml declaring it."""
    from jira_pipeline.component import JiraSite

    for site in tree.get_all_components(JiraSite):
        where = site.declared_in
        if where is None:
            yield site, "a JiraSite component"
            continue
        try:
            yield site, str(where.relative_to(tree.project_root))
        except ValueError:
            yield site, str(where)


def _check_site_names(named: Sequence[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for name, where in named:
        if name in seen:
            raise ConfigurationError(
                "name",
                f"{name!r} is given to two Jira sites: {seen[name]} and {where}; each site needs "
                "a name of its own (it prefixes the site's asset keys)",
            )
        seen[name] = where
