"""Run parameters injected into steps by argument name."""

from __future__ import annotations

from typing import Any, Mapping


class Context:
    """Parameters of a run: ``Context(learning_rate=0.1)``.

    A step receives the parameters whose names match its arguments; only those
    enter its cache key, so changing an unrelated parameter keeps it cached.
    """

    def __init__(self, **params: Any) -> None:
        self._params = dict(params)

    @classmethod
    def coerce(cls, value: Context | Mapping[str, Any] | None) -> Context:
        if value is None:
            return cls()
        if isinstance(value, Context):
            return value
        return cls(**dict(value))

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def inject_params(self, target: Any) -> dict[str, Any]:
        """The parameters a step (or function) accepts by name."""
        from flowyml_core.step import Step

        if isinstance(target, Step):
            names, takes_all = target.param_names, target.accepts_any_kwargs
        else:
            from flowyml_core.step import signature_names

            names, takes_all = signature_names(target)
        if takes_all:
            return dict(self._params)
        return {k: v for k, v in self._params.items() if k in names}

    def __getitem__(self, key: str) -> Any:
        return self._params[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._params.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._params

    def __repr__(self) -> str:
        return f"Context({', '.join(sorted(self._params))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Context) and other._params == self._params

    def with_updates(self, updates: Mapping[str, Any]) -> Context:
        return Context(**{**self._params, **updates})


