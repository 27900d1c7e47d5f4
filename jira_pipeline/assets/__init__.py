"""Dagster assets, partitions, checks, schedules and sensors, one module per concern."""
