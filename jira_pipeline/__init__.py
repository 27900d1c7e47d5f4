"""Keep a MongoDB copy of Jira up to date with Dagster."""

__version__ = "0.1.0"
