"""Builds the code location: one set of assets, checks, jobs, schedule and sensor per Jira site."""

from __future__ import annotations

import warnings

import dagster as dg

from jira_pipeline.assets.checks import build_issue_checks
from jira_pipeline.assets.dimensions import build_dimension_assets
from jira_pipeline.assets.issues import build_issues_asset
from jira_pipeline.assets.jobs import RUN_EXECUTOR, build_site_jobs
from jira_pipeline.assets.partitions import issue_partitions
from jira_pipeline.assets.projects import PROJECTS
from jira_pipeline.assets.schedules import build_daily_schedule
from jira_pipeline.assets.sensors import build_refresh_sensor
from jira_pipeline.assets.sites import JiraSite, environment_site, registered_site
from jira_pipeline.assets.statuses import STATUSES
from jira_pipeline.assets.summary import build_summary_asset
from jira_pipeline.assets.users import USERS
from jira_pipeline.settings import ConfigurationError, PipelineSettings, load_settings
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.io_manager import MongoUpsertIOManager
from jira_pipeline.storage.resources import MongoResource


def build_site_definitions(site: JiraSite, settings: PipelineSettings) -> dg.Definitions:
    partitions = issue_partitions(settings.sync_start_date)
    jobs = build_site_jobs(site)
    with warnings.catch_warnings():
        # `backfill_policy` is "beta" in Dagster; single-run backfills are what keeps a year of
        # history one bounded-memory run, so we rely on it knowingly.
        warnings.simplefilter("ignore", dg.BetaWarning)
        issues = build_issues_asset(site, partitions, settings)
    return dg.Definitions(
        assets=[
            build_dimension_assets(site, (PROJECTS, STATUSES, USERS), settings),
            issues,
            build_summary_asset(site, partitions),
        ],
        # The other checks are check_specs of the assets, evaluated in their steps.
        asset_checks=build_issue_checks(site, partitions, settings),
        jobs=jobs.all(),
        schedules=[build_daily_schedule(site, jobs, partitions, settings)],
        sensors=[build_refresh_sensor(site, jobs, partitions, settings)],
        resources={site.resource_key: site.resource},
    )


def configured_sites(mongo: MongoResource, settings: PipelineSettings) -> list[JiraSite]:
    """The environment's site, then each connection registered in `jira_connections`."""
    sites: list[JiraSite] = []
    site = environment_site(mongo, settings)
    if site is not None:
        sites.append(site)
    sites.extend(
        registered_site(connection, mongo, settings)
        for connection in ConnectionRepository(mongo.get_database()).list()
    )
    if not sites:
        raise ConfigurationError(
            "JIRA_BASE_URL",
            "is not set and no connection is registered in jira_connections: set JIRA_BASE_URL "
            "with JIRA_EMAIL and JIRA_API_TOKEN (or JIRA_PAT), register a connection with "
            "`jira-pipeline connections add`, or try `jira-pipeline demo`",
        )
    return sites


def build_definitions(
    settings: PipelineSettings | None = None, mongo: MongoResource | None = None
) -> dg.Definitions:
    settings = settings or load_settings()
    mongo = mongo or MongoResource()
    return dg.Definitions.merge(
        *(build_site_definitions(site, settings) for site in configured_sites(mongo, settings)),
        dg.Definitions(
            resources={"mongo": mongo, "mongo_io_manager": MongoUpsertIOManager(mongo=mongo)},
            executor=RUN_EXECUTOR,  # also the implicit asset job's (UI "Materialize", CLI)
        ),
    )
