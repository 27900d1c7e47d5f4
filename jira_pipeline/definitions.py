"""The code location Dagster loads (`dagster dev -w workspace.yaml`): `defs`."""

from jira_pipeline.assets.factory import build_definitions

defs = build_definitions()
