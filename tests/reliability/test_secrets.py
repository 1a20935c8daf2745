"""${env:...} secrets never appear in CLI output, log records, exception messages or written files."""

from __future__ import annotations

import json

import attrs

from tests.reliability.kit import CliResult
from tests.reliability.secrets_scan import COMMANDS, SecretsReport, _check_output, scan_secrets


def test_secrets_never_leave_the_process(tmp_path):
    report = scan_secrets(tmp_path, console=True)
    assert report.commands >= len(COMMANDS) and report.console_commands == report.commands
    assert report.log_records > 0 and report.files_scanned > 0 and report.api_checks > 0
    assert not report.leaks, json.dumps([attrs.asdict(leak) for leak in report.leaks], indent=2)
    assert not report.other_problems, "\n".join(report.other_problems)


def test_the_scanner_sees_a_leak():
    """Control: the detector is not blind (the secret in stderr and in an escaped exception)."""
    report = SecretsReport()
    needles = {"secret": "RLSECRET-x1"}
    result = CliResult(["stack", "show"], 1, "", "error: token RLSECRET-x1 rejected\n", "ValueError: RLSECRET-x1")
    _check_output(report, result, "stack show", "in-process", needles, 1)
    assert [leak.where for leak in report.leaks] == ["stderr (secret)", "escaped exception (secret)"]
    assert "<SECRET>" in report.leaks[0].excerpt
