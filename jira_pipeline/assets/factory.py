"""Builds the code location: a group of assets and checks per Jira site; the environment's site
has jobs, a schedule and a sensor of its own, the registered sites share one of each."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg

from jira_pipeline.assets.agile import AGILE_DIMENSIONS
from jira_pipeline.assets.changelogs import build_changelogs_asset
from jira_pipeline.assets.checks import build_issue_checks
from jira_pipeline.assets.comments import build_comments_asset
from jira_pipeline.assets.dimensions import build_dimension_assets
from jira_pipeline.assets.fields import FIELDS
from jira_pipeline.assets.history import (
    build_field_history_asset,
    build_status_transitions_asset,
    build_time_in_status_asset,
)
from jira_pipeline.assets.issue_links import build_issue_links_asset
from jira_pipeline.assets.issues import build_issues_asset
from jira_pipeline.assets.jobs import RUN_EXECUTOR, build_site_jobs, build_sites_job
from jira_pipeline.assets.partitions import issue_partitions
from jira_pipeline.assets.project_parts import PROJECT_PARTS
from jira_pipeline.assets.projects import PROJECTS
from jira_pipeline.assets.reference_data import REFERENCE_DATA
from jira_pipeline.assets.schedules import build_daily_schedule, build_sites_daily_schedule
from jira_pipeline.assets.sensors import build_refresh_sensor, build_sites_refresh_sensor
from jira_pipeline.assets.site_resource import JiraSitesResource
from jira_pipeline.assets.site_template import SiteTemplate
from jira_pipeline.assets.sites import (
    SHARED_RESOURCE_KEY,
    JiraSite,
    environment_site,
    registered_site,
)
from jira_pipeline.assets.sprints import build_sprint_issues_asset, build_sprint_report_asset
from jira_pipeline.assets.statuses import STATUSES
from jira_pipeline.assets.summary import build_summary_asset
from jira_pipeline.assets.users import USERS
from jira_pipeline.assets.worklogs import build_worklogs_asset
from jira_pipeline.settings import ConfigurationError, PipelineSettings, load_settings
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.io_manager import MongoUpsertIOManager
from jira_pipeline.storage.resources import MongoResource


def site_assets_and_checks(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """A site's assets and asset checks (its group), without jobs or automation."""
    with warnings.catch_warnings():
        # `backfill_policy` is "beta" in Dagster; single-run backfills are what keeps a year of
        # history one bounded-memory run, so we rely on it knowingly.
        warnings.simplefilter("ignore", dg.BetaWarning)
        issues = build_issues_asset(site, partitions, settings)
    assets = [
        build_dimension_assets(
            # The users after the fields and sprints: the issues' references of users and
            # sprints are one pass, which needs the stored fields to find the sprint field.
            site, (PROJECTS, STATUSES, FIELDS, *REFERENCE_DATA, *AGILE_DIMENSIONS, USERS,
                   *PROJECT_PARTS), settings
        ),
        issues,
        build_summary_asset(site, partitions),
        build_comments_asset(site, partitions, settings),
        build_changelogs_asset(site, partitions, settings),
        build_worklogs_asset(site, partitions, settings),
        build_field_history_asset(site, partitions, settings),
        build_status_transitions_asset(site, partitions, settings),
        build_time_in_status_asset(site, partitions, settings),
        build_sprint_issues_asset(site, partitions, settings),
        build_sprint_report_asset(site),
        build_issue_links_asset(site, partitions, settings),
    ]
    # The other checks are check_specs of the assets, evaluated in their steps.
    checks = build_issue_checks(site, partitions, settings)
    return assets, checks


def build_site_definitions(
    site: JiraSite,
    settings: PipelineSettings,
    *,
    partitions: dg.DailyPartitionsDefinition | None = None,
) -> dg.Definitions:
    """One site with jobs, a schedule and a sensor of its own (the environment's site)."""
    partitions = partitions or issue_partitions(settings.sync_start_date)
    jobs = build_site_jobs(site)
    assets, checks = site_assets_and_checks(site, partitions, settings)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs.all(),
        schedules=[build_daily_schedule(site, jobs, partitions, settings)],
        sensors=[build_refresh_sensor(site, jobs, partitions, settings)],
        resources={site.resource_key: site.jira_resource},
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


def build_registered_sites_definitions(
    sites: list[JiraSite], settings: PipelineSettings, partitions: dg.DailyPartitionsDefinition
) -> dg.Definitions:
    """Every registered site's group, assembled once, with one job, one schedule and one
    sensor covering them all: what a site adds to the load is its assets and checks only."""
    if not sites:
        return dg.Definitions()
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    # The builders run once, for a template site; each site gets copies under its own names
    # (Dagster's decorators cost ~11 ms of CPU a site; see site_template.py).
    template = SiteTemplate(lambda site: site_assets_and_checks(site, partitions, settings))
    for site in sites:
        site_assets, site_checks = template.copies_for(site)
        assets.extend(site_assets)
        checks.extend(site_checks)
    job = build_sites_job([key for asset in assets for key in asset.keys])
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[job],
        schedules=[build_sites_daily_schedule(sites, job, partitions, settings)],
        sensors=[build_sites_refresh_sensor(sites, job, partitions, settings)],
        # One resource hands each registered site's steps the site's Jira resource: a top-level
        # resource per site made Dagster match every definition against every site's (the
        # square of the sites), and one bound per site cost ~30 ms of CPU a site to build.
        resources={SHARED_RESOURCE_KEY: JiraSitesResource()},
    )


def assemble_definitions(
    sites: list[JiraSite], settings: PipelineSettings, shared_resources: Mapping[str, Any]
) -> dg.Definitions:
    """The environment's site with its own jobs and automation, the registered sites sharing
    one of each, the `shared_resources` (`mongo`, the IO manager) and the one-process executor:
    what every entry point (`build_definitions`, the dg project's `load_project`) loads."""
    # One partitions definition for every site's issues (equal by value; built once).
    partitions = issue_partitions(settings.sync_start_date)
    return dg.Definitions.merge(
        *(
            build_site_definitions(site, settings, partitions=partitions)
            for site in sites
            if not site.prefixed
        ),
        build_registered_sites_definitions(
            [site for site in sites if site.prefixed], settings, partitions
        ),
        dg.Definitions(
            resources=dict(shared_resources),
            executor=RUN_EXECUTOR,  # also the implicit asset job's (UI "Materialize", CLI)
        ),
    )


def build_definitions(
    settings: PipelineSettings | None = None, mongo: MongoResource | None = None
) -> dg.Definitions:
    settings = settings or load_settings()
    mongo = mongo or MongoResource()
    return assemble_definitions(
        configured_sites(mongo, settings),
        settings,
        {"mongo": mongo, "mongo_io_manager": MongoUpsertIOManager(mongo=mongo)},
    )
