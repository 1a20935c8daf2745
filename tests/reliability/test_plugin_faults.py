"""A plugin that raises on import, a duplicate flavor, a component raising in __init__ (and more):
the CLI and every other stack keep working, and each problem is reported."""

from __future__ import annotations

import json

from tests.reliability.plugin_faults import SCENARIOS, as_rows, plugin_faults


def test_broken_plugins_do_not_break_the_others(tmp_path):
    report = plugin_faults(tmp_path, console=True)
    assert len(report.checks) == 2 * len(SCENARIOS)
    assert not report.failed, json.dumps([r for r in as_rows(report) if not r["ok"]], indent=2)
