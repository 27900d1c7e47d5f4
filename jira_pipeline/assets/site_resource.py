"""Binds an asset's or check's typed `jira: JiraResource` parameter to its site's resource key.

Dagster binds a resource parameter by its name, and each site has its own key (`jira` for the
environment's site, `jira_<name>` for each registered connection), while the function bodies are
written once with `jira: JiraResource`. Rather than `required_resource_keys` and
`getattr(context.resources, key)`, the function Dagster sees advertises the parameter under the
site's key (an explicit `__signature__`, which Dagster's decorators read, parameter types
included) and passes it on under the name the body uses. The key stays typed and declared: the
UI lists it as the asset's resource, and a missing resource fails at load time.

The sites registered in `jira_connections` share one resource, `jira_sites`
(`JiraSitesResource`): their function Dagster sees takes `jira_sites: JiraSitesResource`, and
the body still gets `jira: JiraResource`, its own site's, built for the run on first use. A
resource per site cost the load its construction (some 30 ms of CPU a site) and a share of
every job's run config schema, for a thousand sites most of the load.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import dagster as dg
from pydantic import PrivateAttr

from jira_pipeline.assets.resources import JiraResource
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
        shared = site.shared_resource
        renamed = [
            (p.replace(name=key, annotation=JiraSitesResource) if shared else p.replace(name=key))
            if p.name == parameter else p
            for p in signature.parameters.values()
        ]

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            given = kwargs.pop(key)
            kwargs[parameter] = given.for_site(site) if shared else given
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


class JiraSitesResource(dg.ConfigurableResource):
    """The Jira resources of the sites registered in `jira_connections`, one Dagster resource
    for all of them: `for_site` hands a step its site's `JiraResource`, set up on first use in
    the run and torn down (its client closed) when the run ends, so every asset and check of a
    site in one run shares its client, rate limiter and counters, as with a resource of its own.
    """

    _open: dict[str, tuple[ExitStack, JiraResource]] = PrivateAttr(default_factory=dict)
    _guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Given to build_resources: without one it makes an ephemeral instance each call.
        self._instance = context.instance

    def for_site(self, site: JiraSite) -> JiraResource:
        with self._guard:
            if site.connection_id not in self._open:
                stack = ExitStack()
                try:
                    built = stack.enter_context(
                        dg.build_resources({"jira": site.jira_resource}, instance=self._instance)
                    )
                    self._open[site.connection_id] = (stack, built.jira)
                except BaseException:
                    stack.close()
                    raise
            return self._open[site.connection_id][1]

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        with self._guard:
            opened, self._open = list(self._open.values()), {}
        for stack, _resource in opened:
            stack.close()  # the site resource's own teardown closes its client
