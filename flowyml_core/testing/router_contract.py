"""``RouterContract``: what flowyml relies on from a router.

Subclass it, provide a ``router`` fixture, and say which value your rules
route (``routed_value``) and, if any, one they leave alone (``unrouted_value``)::

    class TestMyRouter(RouterContract):
        @pytest.fixture
        def router(self, tmp_path):
            return MyRouter(MyRouterConfig(root=str(tmp_path)))

        @pytest.fixture
        def routed_value(self):
            return {"rows": [1, 2, 3]}

Checked: a matching output is stored and its URI returned; an unmatched one
gives None; distinct runs, steps and names get distinct URIs; the routed value
loads back (through ``router.load(uri)``, or override ``load_routed``);
``run_step`` records the router's URI in the step's result; a pickled copy
(as sent to workers) routes the same way.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from flowyml_core.testing.samples import emit, make_step

#: Marker for "this router routes everything" (no unrouted value to check).
ROUTES_EVERYTHING = object()


class RouterContract:
    """Abstract test class: subclass it and provide ``router`` (and usually ``routed_value``)."""

    @pytest.fixture
    def router(self) -> Any:
        raise NotImplementedError("provide a `router` fixture that returns your router")

    @pytest.fixture
    def routed_value(self) -> Any:
        """A value your router's rules match."""
        return {"kit": [1, 2, 3]}

    @pytest.fixture
    def unrouted_value(self) -> Any:
        """A value no rule matches, or ROUTES_EVERYTHING."""
        return ROUTES_EVERYTHING

    def load_routed(self, router: Any, uri: str) -> Any:
        load = getattr(router, "load", None)
        if not callable(load):
            pytest.skip(f"{type(router).__name__} has no load(uri); override load_routed to read a routed value back")
        return load(uri)

    def route(self, router: Any, value: Any, name: str = "output", step_name: str = "step", run_id: str = "kit-run", **kwargs: Any) -> Any:
        return router.route(value, name=name, step_name=step_name, run_id=run_id, **kwargs)

    def test_matching_output_is_routed(self, router: Any, routed_value: Any) -> None:
        uri = self.route(router, routed_value)
        assert isinstance(uri, str) and uri, f"route() must return the URI it stored the value at, got {uri!r}"

    def test_unmatched_output_is_not_routed(self, router: Any, unrouted_value: Any) -> None:
        if unrouted_value is ROUTES_EVERYTHING:
            pytest.skip("unrouted_value is ROUTES_EVERYTHING: this router routes every value")
        uri = self.route(router, unrouted_value)
        assert uri is None, f"route() must return None for a value it does not route ({unrouted_value!r}), got {uri!r}"

    def test_routed_value_loads_back(self, router: Any, routed_value: Any) -> None:
        uri = self.route(router, routed_value, return_type=type(routed_value))
        loaded = self.load_routed(router, uri)
        assert loaded == routed_value, f"the value routed to {uri} loads back as {loaded!r}"

    def test_routes_do_not_collide(self, router: Any, routed_value: Any) -> None:
        places = [("r1", "s", "n", "p"), ("r2", "s", "n", "p"), ("r1", "t", "n", "p"), ("r1", "s", "m", "p"), ("r1", "s", "n", "q")]
        uris = [self.route(router, routed_value, name=n, step_name=s, run_id=r, project_name=p) for r, s, n, p in places]
        assert all(isinstance(u, str) for u in uris), f"route() must return a URI for every routed value, got {uris}"
        assert len(set(uris)) == len(places), (
            f"values of different runs, steps, names or projects must not share a URI: {uris}"
        )

    def test_run_step_records_the_routed_uri(self, router: Any, routed_value: Any) -> None:
        from flowyml_core.execution import run_step

        step = make_step(emit, outputs=["table"], cache=False)
        result = run_step(step, {}, {"value": routed_value}, router=router, run_id="kit-run-step")
        assert result.success, f"run_step with this router failed: {result.error}"
        assert "table" in result.artifact_uris, (
            f"run_step must record the routed URI of output 'table' in artifact_uris, got {result.artifact_uris!r}"
        )
        assert result.artifact_uri == result.artifact_uris["table"], "artifact_uri must be the routed output's URI"
        loaded = self.load_routed(router, result.artifact_uri)
        assert loaded == routed_value, f"the output routed by run_step loads back as {loaded!r}"

    def test_a_pickled_copy_routes_the_same_way(self, router: Any, routed_value: Any) -> None:
        copy = pickle.loads(pickle.dumps(router))
        uri = self.route(copy, routed_value, run_id="kit-copy")
        assert isinstance(uri, str) and uri, f"a pickled copy of the router (as sent to workers) did not route: {uri!r}"
        loaded = self.load_routed(router, uri)
        assert loaded == routed_value, f"a value routed by a pickled copy loads back as {loaded!r}"
