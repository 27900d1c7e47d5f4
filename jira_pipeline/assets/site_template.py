"""Every registered site's assets and checks copied from one site's, built once per load.

Dagster's decorators cost a few milliseconds of CPU per definition (signature and type-hint
inspection, config schema inference, in/out resolution): a registered site's five definitions
were ~11 ms of every site's load. The registered sites' definitions differ only in their site:
keys, group, metadata and tags, op name and pool. So the builders (`site_assets_and_checks`)
run once, for a template site, and each site gets copies with the template's names replaced by
its own, each copy's op delegating to the site's own definition, which the builders make the
first time one of the site's steps runs in a process (a run of one site builds that site only).
A copy is checked against the site's own definition then, and in the test suite for every
definition, so a builder that puts its site somewhere this module does not replace fails
loudly rather than syncing the template's name.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.decorators.op_decorator import DecoratedOpFunction
from dagster._core.definitions.op_definition import OpDefinition

from jira_pipeline.assets.sites import JiraSite

# Distinctive values: every string holding them in a template definition is the site's.
TEMPLATE_NAME = "jira_site_template"
TEMPLATE_CONNECTION_ID = "jira-site-template-connection"

SiteBuilder = Callable[
    [JiraSite], tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]
]


def _no_resource() -> Any:
    raise AssertionError("the template site has no Jira: its copies run their site's own steps")


class SiteTemplate:
    """The registered sites' definitions: `build` run once for a template site, then copied."""

    def __init__(self, build: SiteBuilder) -> None:
        self._build = build
        self.site = JiraSite(name=TEMPLATE_NAME, connection_id=TEMPLATE_CONNECTION_ID,
                             prefixed=True, build_resource=_no_resource)
        self._assets, self._checks = build(self.site)
        self._own: dict[str, list[dg.AssetsDefinition]] = {}
        self._guard = threading.Lock()

    def copies_for(
        self, site: JiraSite
    ) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
        """`site`'s assets and checks, as the builders would make them, without building."""
        with warnings.catch_warnings():
            # Rebuilding passes every attribute back, `execution_type` ("beta") among them.
            warnings.simplefilter("ignore", dg.BetaWarning)
            assets = [self._copy(d, site, n) for n, d in enumerate(self._assets)]
            offset = len(self._assets)
            checks = [self._copy(d, site, offset + n) for n, d in enumerate(self._checks)]
        return assets, [check for check in checks if isinstance(check, dg.AssetChecksDefinition)]

    def own_definitions(self, site: JiraSite) -> list[dg.AssetsDefinition]:
        """`site`'s definitions made by the builders (once per process), assets then checks."""
        with self._guard:
            if site.name not in self._own:
                assets, checks = self._build(site)
                self._own[site.name] = [*assets, *checks]
            return self._own[site.name]

    def _copy(self, definition: dg.AssetsDefinition, site: JiraSite, index: int
              ) -> dg.AssetsDefinition:
        names = _SiteNames(site)
        attributes = definition.get_attributes_dict()
        node = attributes["node_def"]
        assert isinstance(node, OpDefinition), f"{node.name}: only op-backed definitions are copied"
        attributes.update(
            # Inputs and outputs are named after keys too (what the UI and run logs show).
            keys_by_input_name={names.text(k): names.key(v) for k, v in
                                attributes["keys_by_input_name"].items()},
            keys_by_output_name={names.text(k): names.key(v) for k, v in
                                 attributes["keys_by_output_name"].items()},
            selected_asset_keys={names.key(k) for k in attributes["selected_asset_keys"]},
            selected_asset_check_keys={names.check_key(k) for k in
                                       attributes["selected_asset_check_keys"]},
            check_specs_by_output_name={names.text(k): names.check_spec(v) for k, v in
                                        attributes["check_specs_by_output_name"].items()},
            specs=[names.spec(spec) for spec in attributes["specs"]],
            node_def=self._copy_op(node, site, index, names),
        )
        return definition.__class__(**attributes)

    def _copy_op(self, node: OpDefinition, site: JiraSite, index: int, names: _SiteNames
                 ) -> OpDefinition:
        body = node.compute_fn.decorated_fn if isinstance(node.compute_fn, DecoratedOpFunction) \
            else node.compute_fn
        name = names.text(node.name)

        def own_body() -> Callable[..., Any]:
            own = self.own_definitions(site)[index].node_def
            if own.name != name:
                raise RuntimeError(
                    f"site {site.name}: the copied op {name} is not the builders' {own.name}; "
                    "a builder names its definitions otherwise than site_template.py expects"
                )
            assert isinstance(own, OpDefinition)
            compute = own.compute_fn
            return compute.decorated_fn if isinstance(compute, DecoratedOpFunction) else compute

        # Dagster runs a generator function's body only once iterated: keep body's kind.
        if inspect.isgeneratorfunction(body):
            def delegate(*args: Any, **kwargs: Any) -> Any:
                yield from own_body()(*args, **kwargs)
        else:
            def delegate(*args: Any, **kwargs: Any) -> Any:
                return own_body()(*args, **kwargs)

        delegate = functools.wraps(body)(delegate)
        delegate.__signature__ = inspect.signature(body)  # type: ignore[attr-defined]
        return _renamed_op(node, name, DecoratedOpFunction(delegate), names)


def _renamed_op(node: OpDefinition, name: str, compute_fn: DecoratedOpFunction,
                names: _SiteNames) -> OpDefinition:
    """`node` under `name`, running `compute_fn`, its inputs, outputs and pool renamed: copied
    attribute by attribute, because OpDefinition's constructor inspects the function and
    resolves every input and output type again (a 1,000-site load spent 5 s of CPU there) for
    what the template's op already holds. test_site_template compares the copies with the ops
    the builders make, so a Dagster release that changes these attributes fails there."""
    def renamed(definition: Any) -> Any:
        copied = copy.copy(definition)
        copied._name = names.text(definition.name)
        return copied

    # In name order, as OpDefinition sorts them (the names changed).
    inputs = sorted((renamed(d) for d in node.input_defs), key=lambda d: d.name)
    outputs = [renamed(d) for d in node.output_defs]
    op = copy.copy(node)
    op.__dict__.update(
        _name=name, _compute_fn=compute_fn, _pool=names.text(node.pool) if node.pool else None,
        _input_defs=inputs, _input_dict={d.name: d for d in inputs},
        _output_defs=outputs, _output_dict={d.name: d for d in outputs},
        __wrapped__=compute_fn.decorated_fn,
    )
    return op


class _SiteNames:
    """Replaces the template site's names by `site`'s in keys, specs and strings."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site

    def text(self, value: str) -> str:
        return value.replace(TEMPLATE_CONNECTION_ID, self.site.connection_id).replace(
            TEMPLATE_NAME, self.site.name
        )

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dg.TextMetadataValue):
            return dg.MetadataValue.text(self.text(value.value))
        return value

    def mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {self.text(k): self.value(v) for k, v in values.items()}

    def key(self, key: dg.AssetKey) -> dg.AssetKey:
        return dg.AssetKey([self.text(part) for part in key.path])

    def check_key(self, key: dg.AssetCheckKey) -> dg.AssetCheckKey:
        return key.replace_asset_key(self.key(key.asset_key))

    def dep(self, dep: Any) -> dg.AssetDep:
        dep = dep if isinstance(dep, dg.AssetDep) else dg.AssetDep(dep)
        return dep._replace(asset_key=self.key(dep.asset_key))

    def spec(self, spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec._replace(
            key=self.key(spec.key),
            deps=[self.dep(dep) for dep in spec.deps],
            group_name=self.text(spec.group_name) if spec.group_name else spec.group_name,
            metadata=self.mapping(spec.metadata),
            tags=self.mapping(spec.tags),
            description=self.text(spec.description) if spec.description else spec.description,
        )

    def check_spec(self, spec: dg.AssetCheckSpec) -> dg.AssetCheckSpec:
        return spec._replace(
            asset_key=self.key(spec.asset_key),
            additional_deps=[self.dep(dep) for dep in spec.additional_deps],
            metadata=self.mapping(spec.metadata),
            description=self.text(spec.description) if spec.description else spec.description,
        )
