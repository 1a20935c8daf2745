"""Generated stacks.toml files and command lines: no crash, clear one-line errors, no file touched."""

from __future__ import annotations

import json

import pytest

from tests.reliability.fuzz import fuzz_cli

DEFAULT_EXAMPLES = 300
CONSOLE_EXAMPLES = 6
LONG_EXAMPLES = 10_000


def _explain(report) -> str:
    seen, lines = set(), []
    for failure in report.failures:
        key = json.dumps([failure["argv"], failure["project"], failure["user"]], ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            lines.append(json.dumps(failure, indent=2, ensure_ascii=False))
    return f"{len(seen)} distinct failing example(s):\n" + "\n".join(lines[:5])


def test_generated_inputs_inprocess(tmp_path):
    report = fuzz_cli(DEFAULT_EXAMPLES, tmp_path / "ws", tmp_path / "plugins", fail_fast=True)
    assert report.examples == DEFAULT_EXAMPLES
    assert report.violations == 0, _explain(report)
    # The generator reaches every command and every outcome.
    assert {"stack list", "stack show", "stack validate", "run", "plugins"} <= set(report.by_command)
    assert {"0", "1", "2"} <= set(report.by_exit)


def test_generated_inputs_console_script(tmp_path):
    report = fuzz_cli(0, tmp_path / "ws", tmp_path / "plugins", console_examples=CONSOLE_EXAMPLES, fail_fast=True)
    assert report.console_examples == CONSOLE_EXAMPLES
    assert report.violations == 0, _explain(report)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the suite's 300 s per-test limit is for default-size tests
def test_generated_inputs_long(tmp_path):
    report = fuzz_cli(LONG_EXAMPLES, tmp_path / "ws", tmp_path / "plugins", console_examples=50, derandomize=False)
    assert report.examples == LONG_EXAMPLES
    assert report.violations == 0, _explain(report)
