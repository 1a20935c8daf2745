"""A router registered as a class object (not a "module:Name" string)."""

from __future__ import annotations

from flowyml_core.components import Router


class NullRouter(Router):
    """Routes nothing: every output goes on to the artifact store."""

    def route(self, output, *, name, step_name, run_id, project_name="default", return_type=None):
        return None
