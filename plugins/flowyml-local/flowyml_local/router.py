"""The ``type`` router: send outputs of some types to another store, path and format.

A stack's router is asked about every output before the artifact store::

    [stacks.local.router]
    flavor = "type"

    [[stacks.local.router.rules]]
    type = "numpy.ndarray"                  # a class name, or a dotted path
    store = "/data/arrays"                  # any fsspec URL: a path, gs://bucket/prefix, memory://...
    path = "{project_name}/{run_id}/{step_name}/{name}"
    materializer = "numpy"                  # optional: force a registered materializer

Rules are matched along the output's MRO, most specific class first, so a rule
for a subclass wins over a rule for its base whatever their order in the file;
among rules for the same class the first one wins. Matching imports nothing:
a rule's type is compared with each class's name and dotted path, and a dotted
alias such as ``pandas.DataFrame`` (whose class lives in
``pandas.core.frame``) is resolved only through modules already imported — if
an object of that class exists, its package has been imported.

The seed ignored a rule's target store and wrote to the default one; here the
output is written to the rule's store, at the rule's path, and that URI is the
output's location.
"""

from __future__ import annotations

import logging
import re
import string
import sys
import threading
from typing import Any, Mapping

import attrs

from flowyml_core.components import Router

logger = logging.getLogger("flowyml.local.router")

#: Placeholders a path template may use.
TEMPLATE_FIELDS = ("project_name", "run_id", "step_name", "name")
DEFAULT_TEMPLATE = "{run_id}/{step_name}/{name}"
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _type_name(_inst: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _TYPE_NAME.match(value):
        raise ValueError(
            f"{attribute.name} must be a class name or dotted path like 'DataFrame' or 'numpy.ndarray', got {value!r}"
        )


def _non_empty(_inst: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty store URL or path")


def _template(_inst: Any, attribute: attrs.Attribute, value: str) -> None:
    problems = template_problems(value)
    if problems:
        raise ValueError(f"{attribute.name} {value!r}: {problems}")


def template_problems(template: str) -> str | None:
    """Why ``template`` is not a usable relative path template, or None."""
    if not isinstance(template, str) or not template.strip():
        return "must be a non-empty relative path template"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"is not a valid template ({exc})"
    unknown = sorted({f for f in fields if f not in TEMPLATE_FIELDS})
    if unknown:
        allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
        return f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; allowed: {allowed}"
    if "name" not in fields:
        return "must contain {name}, or every output of a step would land on the same path"
    if template.startswith(("/", "\\")) or any(part == ".." for part in re.split(r"[/\\]", template)):
        return "must be relative to the store and must not contain '..'"
    return None


@attrs.define(frozen=True)
class TypeRule:
    """Outputs of class ``type`` (or a subclass) go to ``store`` at ``path``, written by ``materializer``."""

    type: str = attrs.field(validator=_type_name)
    store: str = attrs.field(validator=_non_empty)
    path: str = attrs.field(default=DEFAULT_TEMPLATE, validator=_template)
    materializer: str | None = None

    def matches(self, cls: type) -> bool:
        """Whether this rule names ``cls`` (exactly; the router walks the MRO)."""
        wanted = self.type
        if "." not in wanted:
            return cls.__name__ == wanted or cls.__qualname__ == wanted
        if f"{cls.__module__}.{cls.__qualname__}" == wanted:
            return True
        # A public alias (pandas.DataFrame for pandas.core.frame.DataFrame):
        # resolve it only through modules that are already imported.
        module_name, _, attr_path = wanted.partition(".")
        rest = attr_path.split(".")
        while True:
            module = sys.modules.get(module_name)
            if module is not None:
                obj: Any = module
                for attr in rest:  # the namespace only: a module __getattr__ could import
                    obj = getattr(obj, "__dict__", {}).get(attr)
                    if obj is None:
                        break
                if obj is cls:
                    return True
            if len(rest) == 1:
                return False
            module_name = f"{module_name}.{rest.pop(0)}"


@attrs.define(frozen=True)
class TypeRouterConfig:
    """Options of the ``type`` router flavor: an ordered list of rules."""

    rules: list[TypeRule] = attrs.field(factory=list)


class TypeRouter(Router):
    """Routes outputs by type to the rule's own artifact store (built lazily, once per URL)."""

    def __init__(self, config: TypeRouterConfig | None = None) -> None:
        super().__init__(config if config is not None else TypeRouterConfig())
        self.rules: tuple[TypeRule, ...] = tuple(self.config.rules)
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Sent to worker processes (Dask, the conformance kit): the config
        # travels, the lock and the live stores are rebuilt on arrival.
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    def match(self, output: Any) -> TypeRule | None:
        """The rule for ``output``: most specific class first, then rule order."""
        if not self.rules:
            return None
        for cls in type(output).__mro__:
            for rule in self.rules:
                if rule.matches(cls):
                    return rule
        return None

    def route(
        self,
        output: Any,
        *,
        name: str,
        step_name: str,
        run_id: str,
        project_name: str = "default",
        return_type: Any = None,
    ) -> str | None:
        """Write ``output`` where its rule says and return the URI; None when no rule matches.

        ``return_type`` (the step's annotation) is not used: the runtime type is
        exact, and its MRO already covers the annotated base classes.
        """
        rule = self.match(output)
        if rule is None:
            return None
        relpath = self.render(rule, name=name, step_name=step_name, run_id=run_id, project_name=project_name)
        store = self.store_for(rule.store)
        uri = _write(store, output, relpath, rule.materializer, name=name, step_name=step_name,
                     run_id=run_id, project_name=project_name)
        logger.debug("routed %s/%s (%s) to %s", step_name, name, type(output).__name__, uri)
        return uri

    @staticmethod
    def render(rule: TypeRule, **fields: str) -> str:
        """The rule's path for these names; refuses names that would leave the store."""
        for key, value in fields.items():
            if not value or value in (".", "..") or "/" in value or "\\" in value:
                raise ValueError(f"{key} {value!r} cannot be used in an artifact path (no '/', '\\\\', '.' or '..')")
        return rule.path.format(**fields)

    def store_for(self, url: str) -> Any:
        """The artifact store at ``url``, created on first use and shared by threads."""
        store = self._stores.get(url)
        if store is None:
            with self._lock:
                store = self._stores.get(url)
                if store is None:
                    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

                    store = LocalArtifactStore(LocalArtifactStoreConfig(path=url))
                    self._stores[url] = store
        return store

    def load(self, uri: str) -> Any:
        """Read back an output this router stored (checked like any artifact)."""
        return self.store_containing(uri).load(uri)

    def store_containing(self, uri: str) -> Any:
        """The rule store under whose root ``uri`` lies (the deepest, if roots nest)."""
        best, best_len = None, -1
        for url in dict.fromkeys(rule.store for rule in self.rules):
            store = self.store_for(url)
            root = str(store.root).rstrip("/")
            if (uri == root or uri.startswith(root + "/") or uri.startswith(root + "\\")) and len(root) > best_len:
                best, best_len = store, len(root)
        if best is None:
            raise ValueError(f"{uri} is not inside any store of this router's rules")
        return best

    def portable_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The declared rules for a unit elsewhere: relative store paths made absolute (see ``portable.py``)."""
        from flowyml_local.portable import absolute

        rules = [
            {**rule, "store": absolute(rule["store"])} if isinstance(rule, Mapping) and "store" in rule else rule
            for rule in options.get("rules", [])
        ]
        return {**options, "rules": rules} if "rules" in options else dict(options)

    def validate(self) -> None:
        """Check that each rule's materializer is registered and its store can be created."""
        from flowyml_core.errors import ConfigError
        from flowyml_core.plugins import get_registry

        known = {spec.name for spec in get_registry().materializer_specs()}
        problems = []
        for i, rule in enumerate(self.rules):
            where = f"rule {i + 1} ({rule.type} -> {rule.store})"
            if rule.materializer is not None and rule.materializer not in known:
                problems.append(f"{where}: unknown materializer {rule.materializer!r} (registered: {', '.join(sorted(known)) or 'none'})")
            try:
                self.store_for(rule.store)
            except Exception as exc:  # reported to the person validating the stack
                problems.append(f"{where}: cannot use store: {type(exc).__name__}: {exc}")
        if problems:
            raise ConfigError("; ".join(problems))


def _write(store: Any, obj: Any, relpath: str, materializer: str | None, **names: str) -> str:
    """Write ``obj`` at ``relpath`` inside ``store`` with the named materializer (or by type)."""
    return store.materialize_at(obj, relpath, materializer=materializer)
