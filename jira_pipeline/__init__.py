"""Keep a MongoDB copy of Jira up to date with Dagster."""

from __future__ import annotations

from typing import Any

from jira_pipeline import heap

__version__ = "0.1.0"

# The interpreter's shutdown need not walk the whole heap (see jira_pipeline/heap.py).
heap.install()

# Loaded on first use, so `import jira_pipeline` (every command, every code server) stays cheap.
_LAZY = {"JiraSite": "jira_pipeline.component"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jira_pipeline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # dg lists the components of a registry module by `dir()` (entry point
    # `dagster_dg_cli.registry_modules`).
    return sorted([*globals(), *_LAZY])
