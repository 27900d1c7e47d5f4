"""Binds an asset's or check's typed `jira: JiraResource` parameter to its site's resource key.

Dagster binds a resource parameter by its name, and each site has its own key (`jira` for the
environment's site, `jira_<name>` for each registered connection), while the function bodies are
written once with `jira: JiraResource`. Rather than `required_resource_keys` and
`getattr(context.resources, key)`, the function Dagster sees advertises the parameter under the
site's key (an explicit `__signature__`, which Dagster's decorators read, parameter types
included) and passes it on under the name the body uses. The key stays typed and declared: the
UI lists it as the asset's resource, and a missing resource fails at load time.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from jira_pipeline.assets.sites import JiraSite

F = TypeVar("F", bound=Callable[..., Any])
PARAMETER = "jira"


def with_site_resource(site: JiraSite, parameter: str = PARAMETER) -> Callable[[F], F]:
    """Decorate (below `@dg.asset` / `@dg.multi_asset` / `@dg.asset_check`) a function taking
    `jira: JiraResource`, so that Dagster gives it the resource bound to `site.resource_key`."""

    def bind(fn: F) -> F:
        key = site.resource_key
        if key == parameter:
            return fn
        # Annotations resolved here, against fn's module: Dagster reads them off the signature.
        signature = inspect.signature(fn, eval_str=True)
        renamed = [
            p.replace(name=key) if p.name == parameter else p
            for p in signature.parameters.values()
        ]

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            kwargs[parameter] = kwargs.pop(key)
            return fn(*args, **kwargs)

        # Dagster runs a generator function's body only once iterated: keep fn's kind.
        if inspect.isgeneratorfunction(fn):
            def bound(*args: Any, **kwargs: Any) -> Any:
                yield from call(args, kwargs)
        else:
            def bound(*args: Any, **kwargs: Any) -> Any:
                return call(args, kwargs)

        bound = functools.wraps(fn)(bound)

        bound.__signature__ = signature.replace(parameters=renamed)  # type: ignore[attr-defined]
        return bound  # type: ignore[return-value]

    return bind
