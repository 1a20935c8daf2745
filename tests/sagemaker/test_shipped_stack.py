"""The quickstart on the repository's own ``sagemaker-local`` stack (stacks.toml), through the real CLI.

The issue's acceptance run: the first run submits every unit; the second is
fully cached and submits nothing; after ``--param epochs=…`` only the steps
that take it and those below them are submitted, and their outputs are those
of a local run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from flowyml_core.loader import load_pipeline
from flowyml_core.records import RunRecords

from tests.servers.moto_s3 import KEY, SECRET

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_twice_then_with_a_new_parameter(project, run_cli, fake_sagemaker_factory, moto_s3, step_env,
                                                   monkeypatch):
    shutil.copy(REPO / "examples" / "quickstart.py", project / "quickstart.py")
    if not moto_s3.filesystem().exists("flowyml-local"):
        moto_s3.make_bucket("flowyml-local")
    aws = {"AWS_ENDPOINT_URL": moto_s3.url, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    fake = fake_sagemaker_factory(workdir=project, base_env={**step_env, **aws}, step_timeout=60.0)
    env = {"FLOWYML_STACKS_FILE": str(REPO / "stacks.toml"), "FLOWYML_SAGEMAKER_ENDPOINT": fake.url, **aws,
           "AWS_EC2_METADATA_DISABLED": "true"}

    def flowyml_run(*params):
        args = [a for p in params for a in ("--param", p)]
        out = run_cli("run", "quickstart.py:pipeline", "--stack", "sagemaker-local", "--timeout", "120", *args,
                      cwd=project, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert SECRET not in out.stdout + out.stderr
        return out

    flowyml_run()
    assert len(fake.calls("SageMaker.StartPipelineExecution")) == 1
    second = flowyml_run()
    assert len(fake.calls("SageMaker.StartPipelineExecution")) == 1, "the second run submitted an execution"
    assert "fully cached" in second.stdout and "nothing was built or submitted" in second.stdout

    executions = len(fake.executions)
    third = flowyml_run("epochs=7")
    assert len(fake.calls("SageMaker.StartPipelineExecution")) == 2
    definition = fake.definition("flowyml-quickstart")
    assert sorted(s["Name"] for s in definition["Steps"]) == ["evaluate", "report", "train"]
    assert sorted(e.task_name for e in fake.executions[executions:]) == ["evaluate", "report", "train"]
    assert "3 ran, 2 cached" in third.stdout

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    local = load_pipeline("quickstart.py:pipeline").run(stack="local", context={"epochs": 7})
    run_id = re.search(r"run (\w+) completed", third.stdout).group(1)
    from flowyml_core.stacks import StackRegistry

    stack = StackRegistry.load().resolve("sagemaker-local")
    records = RunRecords(stack.artifact_store, run_id)
    report = records.read("report")
    assert report.status == "completed"
    assert records.load_output(report, "report", None) == local.outputs["report"]
