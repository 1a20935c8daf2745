"""What a `flowyml` command imports: the CLI run in a fresh interpreter, reporting new modules.

Plugins must keep their cloud SDKs out of listing commands; each plugin's
``test_imports.py`` asks this probe which of its heavy packages a command
loaded. Modules already imported at start-up (``*-nspkg.pth`` files
pre-import empty namespace packages such as ``google``) are not counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

_PROBE = """
import json, runpy, sys
before = set(sys.modules)
args, heavy_roots = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["flowyml", *args]
code = 0
try:
    runpy.run_module("flowyml_core.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in heavy_roots)
print("\\n@@" + json.dumps({"code": code, "heavy": heavy}))
"""


def cli_imports(args: Sequence[str], cwd: Path, heavy: Sequence[str]) -> tuple[str, dict[str, Any], str]:
    """Run ``flowyml ARGS`` in ``cwd``: its output, ``{"code": exit code, "heavy": [modules]}``, its stderr."""
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(list(args)), json.dumps(list(heavy))],
                         cwd=cwd, capture_output=True, text=True, timeout=60)
    assert "@@" in out.stdout, out.stderr
    text, _, report = out.stdout.rpartition("\n@@")
    return text, json.loads(report), out.stderr
