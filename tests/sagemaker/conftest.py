"""Fixtures for the SageMaker plugin's tests: the executing fake SageMaker, S3 on moto, a project that uses them.

``sm_project`` is a project directory (the current directory) holding the test
pipeline and a ``stacks.toml`` whose ``sagemaker-local`` stack submits to the
fake (tests/servers/fake_sagemaker.py) and keeps artifacts and cache in moto's
S3 (tests/servers/moto_s3.py). The fake runs each step with a minimal
environment (never the test's ``os.environ``), so what the step runner needs
is listed in ``step_env``: this venv's ``flowyml`` on PATH, the S3 credentials
(as the platform would give them: the stack only names them), a private
config dir.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest

from tests.reliability.conftest import LONG_ENV, long_enabled
from tests.s3.conftest import no_inherited_aws_settings  # noqa: F401  (autouse: no developer AWS settings)
from tests.servers.moto_s3 import KEY, SECRET

HERE = Path(__file__).resolve().parent
PIPELINE_FILE = HERE / "pipeline.py"
PIPELINE_REF = "tests/sagemaker/pipeline.py:pipeline"
#: The fake ignores images unless given an image_map; this one is never pulled.
TEST_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/flowyml:test"
ROLE = "arn:aws:iam::123456789012:role/flowyml-test"
REGION = "us-east-1"
#: What the client signs its SageMaker requests with (the fake accepts any); never real credentials.
CLIENT_ENV = {"AWS_ACCESS_KEY_ID": "sm-test-key", "AWS_SECRET_ACCESS_KEY": "sm-test-secret",
              "S3_TEST_KEY": KEY, "S3_TEST_SECRET": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long variants (``slow``) run with ``FLOWYML_LONG=1`` or ``-m slow``, as in tests/reliability."""
    if long_enabled(config):
        return
    skip = pytest.mark.skip(reason=f"long variant: set {LONG_ENV}=1 or pass -m slow to run it")
    for item in items:
        if "slow" in item.keywords and str(item.fspath).startswith(str(HERE)):
            item.add_marker(skip)


def toml_value(value: Any) -> str:
    import tomli_w

    if isinstance(value, dict):
        return inline_table(value)

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def inline_table(options: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in options.items()) + " }"


def executor_options(fake: Any, **overrides: Any) -> dict[str, Any]:
    options = {"flavor": "sagemaker", "region": REGION, "role_arn": ROLE, "endpoint_url": fake.url,
               "image": TEST_IMAGE, "poll_interval": 0.1}
    options.update(overrides)
    return options


@attrs.define
class SageMakerProject:
    """A project directory wired to the fake SageMaker and moto's S3."""

    path: Path
    fake: Any
    bucket: str
    s3_url: str

    def store_options(self, suffix: str) -> dict[str, Any]:
        return {"flavor": "s3", "url": f"s3://{self.bucket}/{suffix}", "endpoint_url": self.s3_url,
                "region": REGION, "key": "${env:S3_TEST_KEY}", "secret": "${env:S3_TEST_SECRET}"}

    def write_stacks(self, **executor_overrides: Any) -> Path:
        text = (
            'default = "sagemaker-local"\n\n'
            "[stacks.sagemaker-local]\n"
            f"executor = {inline_table(executor_options(self.fake, **executor_overrides))}\n"
            f"artifact_store = {inline_table(self.store_options('artifacts'))}\n"
            f"cache_store = {inline_table(self.store_options('cache'))}\n"
        )
        path = self.path / "stacks.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def resolve(self) -> Any:
        from flowyml_core.stacks import StackRegistry

        return StackRegistry.load(cwd=self.path).resolve("sagemaker-local")


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in CLIENT_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(CLIENT_ENV)


@pytest.fixture
def step_env(tmp_path: Path) -> dict[str, str]:
    """What a step's process needs beyond the fake's minimal env."""
    xdg = tmp_path / "step-xdg"
    xdg.mkdir()
    return {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.defpath]), "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(xdg), "S3_TEST_KEY": KEY, "S3_TEST_SECRET": SECRET,
            "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def sm_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_sagemaker_factory: Callable[..., Any],
               moto_s3: Any, s3_bucket: str, step_env: dict[str, str], client_env: dict[str, str]) -> SageMakerProject:
    """A project (the current directory) with the test pipeline and a ``sagemaker-local`` stack."""
    path = tmp_path / "project"
    (path / "tests" / "sagemaker").mkdir(parents=True)
    shutil.copy(PIPELINE_FILE, path / "tests" / "sagemaker" / PIPELINE_FILE.name)
    fake = fake_sagemaker_factory(workdir=path, base_env=step_env, step_timeout=60.0)
    project = SageMakerProject(path, fake, s3_bucket, moto_s3.url)
    project.write_stacks()
    monkeypatch.chdir(path)
    return project
