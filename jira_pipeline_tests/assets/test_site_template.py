"""A registered site's definitions are copies of one template's (site_template.py): each copy
must be what the builders make for that site, whatever a builder puts its site in."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

from jira_pipeline.assets.factory import site_assets_and_checks
from jira_pipeline.assets.partitions import issue_partitions
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.site_template import TEMPLATE_CONNECTION_ID, TEMPLATE_NAME, SiteTemplate
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.settings import load_settings


def registered(name: str) -> JiraSite:
    return JiraSite(name=name, connection_id=f"connection-of-{name}", prefixed=True,
                    build_resource=lambda: JiraResource(base_url="https://example.invalid"))


def by_key(dep: dg.AssetDep) -> dg.AssetKey:
    return dep.asset_key


def surface(definition: dg.AssetsDefinition) -> dict[str, Any]:
    """Everything Dagster reads of a definition at load and at run time but its function."""
    node = definition.node_def
    assert isinstance(node, dg.OpDefinition)
    return {
        "class": type(definition),
        "keys": definition.keys,
        "check_keys": definition.check_keys,
        # Dependencies in key order: Dagster keeps some of them in sets.
        "specs": sorted((spec._replace(deps=sorted(spec.deps, key=by_key))
                         for spec in definition.specs), key=lambda spec: spec.key),
        "check_specs": sorted((spec._replace(additional_deps=sorted(spec.additional_deps,
                                                                    key=by_key))
                               for spec in definition.check_specs), key=lambda spec: spec.key),
        "keys_by_input_name": definition.node_keys_by_input_name,
        "keys_by_output_name": definition.node_keys_by_output_name,
        "can_subset": definition.can_subset,
        "backfill_policy": definition.backfill_policy,
        "resource_keys": definition.required_resource_keys,
        "op": node.name,
        "pool": node.pool,
        "retry_policy": node.retry_policy,
        "op_tags": node.tags,
        "op_resource_keys": node.required_resource_keys,
        "inputs": [(d.name, d.dagster_type.key, d.hardcoded_asset_key) for d in node.input_defs],
        "outputs": [(d.name, d.dagster_type.key, d.io_manager_key, d.is_required)
                    for d in node.output_defs],
        "config": node.config_schema.as_field().config_type.key
        if node.config_schema is not None else None,
    }


@pytest.fixture
def build(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("JIRA_SYNC_START_DATE", "2026-01-01")
    settings = load_settings({"JIRA_SYNC_START_DATE": "2026-01-01"})
    partitions = issue_partitions(settings.sync_start_date)
    return lambda site: site_assets_and_checks(site, partitions, settings)


def test_each_copied_definition_is_what_the_builders_make_for_the_site(build: Any) -> None:
    template = SiteTemplate(build)
    for name in ("acme", "globex"):
        site = registered(name)
        copied_assets, copied_checks = template.copies_for(site)
        own_assets, own_checks = build(site)

        assert len(copied_assets) == len(own_assets) and len(copied_checks) == len(own_checks)
        for copy, own in zip([*copied_assets, *copied_checks], [*own_assets, *own_checks],
                             strict=True):
            assert surface(copy) == surface(own)
            texts = repr(surface(copy))
            assert TEMPLATE_NAME not in texts and TEMPLATE_CONNECTION_ID not in texts


def test_a_copy_runs_its_own_sites_function_built_once_per_site(build: Any) -> None:
    built: list[str] = []

    def counted(site: JiraSite) -> Any:
        built.append(site.name)
        return build(site)

    template = SiteTemplate(counted)
    acme, globex = registered("acme"), registered("globex")
    template.copies_for(acme)
    template.copies_for(globex)
    assert built == [TEMPLATE_NAME], "copies are made without building"

    for _ in range(2):
        template.own_definitions(acme)
    assert built == [TEMPLATE_NAME, "acme"]
    [summary] = [d for d in template.own_definitions(acme)
                 if dg.AssetKey(["acme", "jira_issue_daily_summary"]) in d.keys]
    assert summary.specs_by_key[dg.AssetKey(["acme", "jira_issue_daily_summary"])].metadata[
        "jira/connection_id"] == "connection-of-acme"
