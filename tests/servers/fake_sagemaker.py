"""A fake SageMaker Pipelines + CloudWatch Logs server that *executes* pipeline executions.

moto's SageMaker stores pipelines but runs nothing (an execution is
``Succeeded`` at once). Tests of the sagemaker orchestrator must prove that the
definition it writes and ``flowyml step-runner`` work together, so this fake
speaks the real AWS JSON 1.1 protocol (``POST /`` with ``X-Amz-Target:
SageMaker.<Operation>`` or ``Logs_20140328.<Operation>``) to the real boto3
clients, and runs each Processing step of a started execution as a local
subprocess, in ``DependsOn`` order: the container's ``ContainerEntrypoint`` +
``ContainerArguments`` with ``base_env`` + the step's ``Environment`` (never
``os.environ``). Each step's arguments are checked as ``CreateProcessingJob``
checks them when SageMaker starts the step (instance type, role, at most 100
variables of at most 256 characters...): a step that breaks a limit fails
with SageMaker's ``ValidationException`` message and starts nothing.

What a step's process prints goes to CloudWatch Logs where SageMaker puts
it: group ``/aws/sagemaker/ProcessingJobs``, stream ``<job name>/algo-1-<time>``,
the job named ``pipelines-<execution id>-<step>-<random>`` as in the step's
``Metadata.ProcessingJob.Arn``.

Operations: SageMaker.CreatePipeline, UpdatePipeline, DescribePipeline,
DeletePipeline, StartPipelineExecution, DescribePipelineExecution,
ListPipelineExecutionSteps, StopPipelineExecution, ListPipelineExecutions,
DescribeProcessingJob;
Logs_20140328.FilterLogEvents, GetLogEvents, DescribeLogStreams. Anything else
answers 400 ``UnknownOperationException``. Everything listens on 127.0.0.1.

Run as a module (``.venv/bin/python -m tests.servers.fake_sagemaker``, from the
repository) it serves the ``sagemaker-local`` stack of stacks.toml: this fake
and moto's S3 with the stack's bucket, steps run in the current directory,
until interrupted.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, Sequence

from tests.servers.fake_vertex import ExecutedProcess, _run_process
from tests.servers.loopback import serve, stop_serving

logger = logging.getLogger(__name__)

ACCOUNT = "123456789012"
LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
_PIPELINE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")
_ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_CREDENTIAL_REGION = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/")


class AwsError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _validation(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def processing_instance_types() -> frozenset[str]:
    import botocore.session

    return frozenset(botocore.session.get_session().get_service_model("sagemaker")
                     .shape_for("ProcessingInstanceType").enum)


def check_processing_arguments(arguments: Mapping[str, Any]) -> None:
    """What CreateProcessingJob refuses, as SageMaker says it (ValidationException)."""
    resources = (arguments.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    instance = resources.get("InstanceType")
    if instance not in processing_instance_types():
        raise _validation(f"1 validation error detected: Value '{instance}' at "
                          "'processingResources.clusterConfig.instanceType' failed to satisfy constraint: Member "
                          "must satisfy enum value set")
    if not 1 <= int(resources.get("VolumeSizeInGB") or 0) <= 16384:
        raise _validation("processingResources.clusterConfig.volumeSizeInGB must be between 1 and 16384")
    if not _ROLE_ARN.match(str(arguments.get("RoleArn") or "")):
        raise _validation(f"Value '{arguments.get('RoleArn')}' at 'roleArn' failed to satisfy constraint")
    app = arguments.get("AppSpecification") or {}
    if not app.get("ImageUri"):
        raise _validation("appSpecification.imageUri must not be empty")
    for what, items in (("containerEntrypoint", app.get("ContainerEntrypoint") or []),
                        ("containerArguments", app.get("ContainerArguments") or [])):
        if len(items) > 100 or any(len(str(i)) > 256 for i in items):
            raise _validation(f"appSpecification.{what}: at most 100 items of at most 256 characters")
    env = arguments.get("Environment") or {}
    if len(env) > 100:
        raise _validation(f"Value at 'environment' failed to satisfy constraint: Map value must satisfy constraint: "
                          f"[Member must have length less than or equal to 100] ({len(env)} entries)")
    for key, value in env.items():
        if len(key) > 256 or not _ENV_KEY.match(key):
            raise _validation(f"Value at 'environment' failed to satisfy constraint: key '{key}'")
        if len(str(value)) > 256:
            raise _validation(f"1 validation error detected: Value at 'environment' failed to satisfy constraint: "
                              f"Map value must satisfy constraint: [Member must have length less than or equal "
                              f"to 256] (key {key}, {len(str(value))} characters)")
    runtime = (arguments.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400)
    if not 1 <= int(runtime) <= 777600:
        raise _validation("stoppingCondition.maxRuntimeInSeconds must be between 1 and 777600")


@dataclass
class StepRun:
    name: str
    display_name: str | None
    definition: dict[str, Any]
    status: str = "Starting"
    start: float | None = None
    end: float | None = None
    failure: str | None = None
    job_name: str | None = None

    def to_api(self, region: str) -> dict[str, Any]:
        out: dict[str, Any] = {"StepName": self.name, "StepStatus": self.status, "AttemptCount": 1, "Metadata": {}}
        if self.display_name:
            out["StepDisplayName"] = self.display_name
        if self.start is not None:
            out["StartTime"] = self.start
        if self.end is not None:
            out["EndTime"] = self.end
        if self.failure:
            out["FailureReason"] = self.failure
        if self.job_name:
            out["Metadata"] = {"ProcessingJob": {
                "Arn": f"arn:aws:sagemaker:{region}:{ACCOUNT}:processing-job/{self.job_name.lower()}"}}
        return out


@dataclass
class Execution:
    arn: str
    execution_id: str
    pipeline: str
    region: str
    definition: dict[str, Any]
    display_name: str | None
    description: str | None
    max_parallel: int
    status: str = "Executing"
    failure: str | None = None
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    steps: list[StepRun] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class FakeSageMaker:
    """Fake SageMaker Pipelines + CloudWatch Logs on 127.0.0.1 that executes what it is given.

    Args:
        workdir: cwd of every step's process.
        base_env: environment every process starts from (the step's ``Environment`` goes on top);
            ``os.environ`` is deliberately not inherited.
        image_map: None accepts every image and ignores it; a mapping makes images strict, like a
            registry: an unknown image fails the step, and the value (None or an argv prefix) wraps
            the command.
        step_timeout: seconds after which a step's process is killed (besides its MaxRuntimeInSeconds).

    Attributes: ``url`` (the endpoint), ``requests`` [(target, body)], ``executions`` (every
    :class:`ExecutedProcess`), ``pipelines`` (name → dict with ``versions``).
    """

    def __init__(self, workdir: str, base_env: Mapping[str, str] | None = None,
                 image_map: Mapping[str, Sequence[str] | None] | None = None, step_timeout: float = 120.0,
                 cancel_grace: float = 1.0, port: int = 0) -> None:
        self.port = port
        self.workdir = str(workdir)
        self.base_env = {str(k): str(v) for k, v in (base_env or {}).items()}
        self.image_map = dict(image_map) if image_map is not None else None
        self.step_timeout = step_timeout
        self.cancel_grace = cancel_grace
        #: Default page sizes of ListPipelineExecutionSteps and FilterLogEvents (AWS's: 10 and 10000);
        #: a test lowers them to make clients page.
        self.steps_page_size = 10
        self.log_page_size = 10000
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.executions: list[ExecutedProcess] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, Execution] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.streams: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._tokens: dict[tuple[str, str], Any] = {}
        self._event_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "FakeSageMaker":
        self._server, self.url = serve(_Handler, self, "fake-sagemaker", self.port)
        return self

    def stop(self) -> None:
        """Stop whatever still runs (killing its processes), then shut down."""
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            run.cancel.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=self.cancel_grace + 5)
        stop_serving(self._server)
        self._server = None

    def __enter__(self) -> "FakeSageMaker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- test conveniences ----------------------------------------------------------------
    def calls(self, operation: str) -> list[dict[str, Any]]:
        """Bodies of the requests to ``operation`` (e.g. "SageMaker.StartPipelineExecution")."""
        return [body for target, body in list(self.requests) if target == operation]

    def definition(self, pipeline: str, version: int | None = None) -> dict[str, Any]:
        versions = self.pipelines[pipeline]["versions"]
        return json.loads(versions[version if version is not None else max(versions)])

    def log_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((e for streams in self.streams.values() for events in streams.values() for e in events),
                          key=lambda e: (e["timestamp"], e["eventId"]))

    def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for run in list(self.runs.values()):
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
                if run.thread.is_alive():
                    raise TimeoutError(f"execution {run.arn} still running after {timeout}s")

    # -- SageMaker operations -------------------------------------------------------------
    def _idempotent(self, operation: str, token: str | None, make: Any) -> Any:
        if not token:
            return make()
        with self._lock:
            key = (operation, token)
            if key not in self._tokens:
                self._tokens[key] = make()
            return self._tokens[key]

    def _pipeline(self, name: str) -> dict[str, Any]:
        name = name.rsplit("/", 1)[-1]
        if name not in self.pipelines:
            raise AwsError("ResourceNotFound", f"Pipeline '{name}' does not exist.")
        return self.pipelines[name]

    @staticmethod
    def _check_definition(text: Any) -> str:
        try:
            definition = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise _validation(f"PipelineDefinition is not valid JSON: {exc}") from None
        names = [s.get("Name") for s in definition.get("Steps", [])]
        bad = [n for n in names if not isinstance(n, str) or not _STEP_NAME.match(n)]
        if bad or len(set(names)) != len(names):
            raise _validation(f"step names must be unique and match [A-Za-z0-9-_]{{1,64}}: {names}")
        for step in definition.get("Steps", []):
            unknown = set(step.get("DependsOn") or []) - set(names)
            if unknown:
                raise _validation(f"step {step['Name']} depends on unknown steps {sorted(unknown)}")
        return str(text)

    def create_pipeline(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        name = body["PipelineName"]
        if not _PIPELINE_NAME.match(name):
            raise _validation(f"Value '{name}' at 'pipelineName' failed to satisfy constraint")
        if not _ROLE_ARN.match(body.get("RoleArn") or ""):
            raise _validation(f"Value '{body.get('RoleArn')}' at 'roleArn' failed to satisfy constraint")
        text = self._check_definition(body.get("PipelineDefinition"))

        def make() -> dict[str, Any]:
            with self._lock:
                if name in self.pipelines:
                    raise _validation(f"Pipeline names must be unique within an AWS account and region. Pipeline "
                                      f"with name ({name}) already exists.")
                arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:pipeline/{name.lower()}"
                self.pipelines[name] = {"arn": arn, "role": body["RoleArn"], "versions": {1: text},
                                        "tags": body.get("Tags", []), "created": time.time(),
                                        "description": body.get("PipelineDescription")}
                return {"PipelineArn": arn}

        return self._idempotent("CreatePipeline", body.get("ClientRequestToken"), make)

    def update_pipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            pipeline = self._pipeline(body["PipelineName"])
            if "PipelineDefinition" in body:
                version = max(pipeline["versions"]) + 1
                pipeline["versions"][version] = self._check_definition(body["PipelineDefinition"])
            if body.get("RoleArn"):
                pipeline["role"] = body["RoleArn"]
            return {"PipelineArn": pipeline["arn"], "PipelineVersionId": max(pipeline["versions"])}

    def describe_pipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["PipelineName"].rsplit("/", 1)[-1]
        pipeline = self._pipeline(name)
        return {"PipelineArn": pipeline["arn"], "PipelineName": name, "RoleArn": pipeline["role"],
                "PipelineDefinition": pipeline["versions"][max(pipeline["versions"])], "PipelineStatus": "Active",
                "CreationTime": pipeline["created"], "PipelineDescription": pipeline.get("description")}

    def start_pipeline_execution(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            with self._lock:
                name = body["PipelineName"].rsplit("/", 1)[-1]
                pipeline = self._pipeline(name)
                version = int(body.get("PipelineVersionId") or max(pipeline["versions"]))
                if version not in pipeline["versions"]:
                    raise AwsError("ResourceNotFound", f"Pipeline version {version} of {name} does not exist.")
                execution_id = secrets.token_hex(6)
                arn = f"{pipeline['arn']}/execution/{execution_id}"
                parallel = (body.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps") or 50
                run = Execution(arn, execution_id, name, region, json.loads(pipeline["versions"][version]),
                                body.get("PipelineExecutionDisplayName"), body.get("PipelineExecutionDescription"),
                                int(parallel))
                self.runs[arn] = run
                run.thread = threading.Thread(target=self._execute, args=(run,), name=f"fake-sm-{execution_id}",
                                              daemon=True)
                run.thread.start()
                return {"PipelineExecutionArn": arn}

        return self._idempotent("StartPipelineExecution", body.get("ClientRequestToken"), make)

    def _run(self, arn: str) -> Execution:
        run = self.runs.get(arn)
        if run is None:
            raise AwsError("ResourceNotFound", f"Pipeline execution '{arn}' does not exist.")
        return run

    def describe_pipeline_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        run = self._run(body["PipelineExecutionArn"])
        out = {"PipelineArn": run.arn.split("/execution/")[0], "PipelineExecutionArn": run.arn,
               "PipelineExecutionStatus": run.status, "CreationTime": run.created, "LastModifiedTime": run.modified}
        if run.display_name:
            out["PipelineExecutionDisplayName"] = run.display_name
        if run.description:
            out["PipelineExecutionDescription"] = run.description
        if run.failure:
            out["FailureReason"] = run.failure
        return out

    def list_pipeline_execution_steps(self, body: dict[str, Any]) -> dict[str, Any]:
        run = self._run(body["PipelineExecutionArn"])
        with self._lock:
            steps = [s.to_api(run.region) for s in run.steps]
        if body.get("SortOrder", "Descending") == "Descending":
            steps.reverse()
        return _page(steps, "PipelineExecutionSteps", body, default_size=self.steps_page_size, max_size=100)

    def list_pipeline_executions(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["PipelineName"].rsplit("/", 1)[-1]
        runs = [self.describe_pipeline_execution({"PipelineExecutionArn": r.arn})
                for r in self.runs.values() if r.pipeline == name]
        summaries = [{k: r[k] for k in ("PipelineExecutionArn", "PipelineExecutionStatus") if k in r}
                     | {"StartTime": r["CreationTime"]} for r in reversed(runs)]
        return _page(summaries, "PipelineExecutionSummaries", body, default_size=10, max_size=100)

    def stop_pipeline_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            run = self._run(body["PipelineExecutionArn"])
            if run.status not in ("Executing", "Stopping"):
                raise _validation(f"Pipeline execution with ARN {run.arn} status is {run.status}. Only Executing "
                                  "pipeline executions can be stopped.")
            run.status, run.modified = "Stopping", time.time()
            run.cancel.set()
        return {"PipelineExecutionArn": run.arn}

    def describe_processing_job(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            job = self.jobs.get(str(body.get("ProcessingJobName", "")).lower())
            if job is None:
                raise _validation(f"Could not find requested job with name {body.get('ProcessingJobName')}")
            step: StepRun = job["step"]
            status = {"Executing": "InProgress", "Stopping": "Stopping", "Starting": "InProgress"}.get(
                step.status, "Completed" if step.status == "Succeeded" else step.status)
            out = {"ProcessingJobName": job["ProcessingJobName"], "ProcessingJobStatus": status,
                   "ProcessingJobArn": f"arn:aws:sagemaker:{job['region']}:{ACCOUNT}:processing-job/"
                                       f"{job['ProcessingJobName'].lower()}",
                   "CreationTime": step.start, **step.definition.get("Arguments", {})}
            if step.failure:
                out["FailureReason"] = step.failure
            return out

    def delete_pipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            pipeline = self._pipeline(body["PipelineName"])
            del self.pipelines[body["PipelineName"]]
        return {"PipelineArn": pipeline["arn"]}

    # -- executing --------------------------------------------------------------------------
    def _execute(self, run: Execution) -> None:
        definition = {s["Name"]: s for s in run.definition.get("Steps", [])}
        done: dict[str, str] = {}
        running: dict[concurrent.futures.Future, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=run.max_parallel) as pool:
            while True:
                if not run.cancel.is_set():
                    for name, step in definition.items():
                        if name in done or name in running.values():
                            continue
                        deps = step.get("DependsOn") or []
                        if all(done.get(d) == "Succeeded" for d in deps) and len(running) < run.max_parallel:
                            running[pool.submit(self._run_step, run, step)] = name
                if not running:
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    done[running.pop(future)] = future.result()
        with self._lock:
            if run.cancel.is_set():
                run.status = "Stopped"
            elif all(done.get(n) == "Succeeded" for n in definition):
                run.status = "Succeeded"
            else:
                run.status = "Failed"
                run.failure = "Step failure: One or multiple steps failed."
            run.modified = time.time()

    def _run_step(self, run: Execution, definition: dict[str, Any]) -> str:
        step = StepRun(definition["Name"], definition.get("DisplayName"), definition, start=time.time())
        with self._lock:
            run.steps.append(step)
            run.modified = time.time()

        def finish(status: str, failure: str | None = None) -> str:
            with self._lock:
                step.status, step.failure, step.end = status, failure, time.time()
                run.modified = time.time()
            return status

        if definition.get("Type") != "Processing":
            return finish("Failed", f"ClientError: the fake runs Processing steps only, not {definition.get('Type')}")
        arguments = definition.get("Arguments") or {}
        try:
            check_processing_arguments(arguments)
        except AwsError as exc:
            return finish("Failed", f"ClientError: {exc.code}: {exc.message}")
        # As SageMaker names them: mixed case, while the step's Metadata ARN is lowercase.
        suffix = "".join(secrets.choice("abcdefghijABCDEFGHIJ0123456789") for _ in range(10))
        job = re.sub(r"[^a-zA-Z0-9-]", "-", f"pipelines-{run.execution_id}-{step.name[:20]}")[:52] + f"-{suffix}"
        stream = f"{job}/algo-1-{int(time.time())}"
        with self._lock:
            step.job_name, step.status = job, "Executing"
            self.jobs[job.lower()] = {"ProcessingJobName": job, "step": step, "region": run.region}
        app = arguments["AppSpecification"]
        argv = [*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", [])]
        image = app["ImageUri"]
        if self.image_map is not None:
            if image not in self.image_map:
                return finish("Failed", f"ClientError: image {image} could not be pulled")
            argv = [*(self.image_map[image] or []), *argv]
        if not argv:
            return finish("Failed", "ClientError: the image has no entrypoint and the step gives none")
        env = {**self.base_env, **{k: str(v) for k, v in (arguments.get("Environment") or {}).items()}}
        record = ExecutedProcess(run.arn, step.name, argv, env, self.workdir, image)
        with self._lock:
            self.executions.append(record)
        runtime = float((arguments.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400))
        outcome = _run_process(argv, env, self.workdir, on_line=lambda line, _s: self._log(stream, line),
                               cancel_event=run.cancel, timeout=min(runtime, self.step_timeout),
                               grace=self.cancel_grace, record=record)
        if outcome.cancelled:
            return finish("Stopped")
        if outcome.ok:
            return finish("Succeeded")
        if outcome.timed_out:
            return finish("Failed", "ClientError: the processing job exceeded its MaxRuntimeInSeconds and was stopped")
        return finish("Failed", f"AlgorithmError: {outcome.describe()}"[:1024])

    def _log(self, stream: str, line: str) -> None:
        with self._lock:
            events = self.streams.setdefault(LOG_GROUP, {}).setdefault(stream, [])
            now = int(time.time() * 1000)
            events.append({"logStreamName": stream, "timestamp": now, "ingestionTime": now,
                           "message": line.rstrip("\r\n"), "eventId": f"{next(self._event_ids):020d}"})

    # -- CloudWatch Logs ----------------------------------------------------------------------
    def _group(self, body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        group = body.get("logGroupName")
        if group not in self.streams:
            raise AwsError("ResourceNotFoundException", "The specified log group does not exist.")
        return self.streams[group]

    def filter_log_events(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("logStreamNames") and body.get("logStreamNamePrefix"):
            raise AwsError("InvalidParameterException",
                           "logStreamNames and logStreamNamePrefix are mutually exclusive")
        with self._lock:
            streams = self._group(body)
            names = [n for n in streams if (not body.get("logStreamNames") or n in body["logStreamNames"])
                     and n.startswith(body.get("logStreamNamePrefix") or "")]
            events = sorted((e for n in names for e in streams[n]), key=lambda e: (e["timestamp"], e["eventId"]))
        start, end = body.get("startTime"), body.get("endTime")
        events = [e for e in events if (start is None or e["timestamp"] >= start) and (end is None or e["timestamp"] <= end)]
        page = _page(events, "events", {"NextToken": body.get("nextToken"), "MaxResults": body.get("limit")},
                     default_size=self.log_page_size, max_size=10000, token_key="nextToken")
        page["searchedLogStreams"] = [{"logStreamName": n, "searchedCompletely": True} for n in names]
        return page

    def get_log_events(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            events = list(self._group(body).get(body.get("logStreamName"), []))
        if not events and body.get("logStreamName") not in self._group(body):
            raise AwsError("ResourceNotFoundException", "The specified log stream does not exist.")
        return {"events": events, "nextForwardToken": "f/end", "nextBackwardToken": "b/start"}

    def describe_log_streams(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            streams = self._group(body)
            out = [{"logStreamName": n, "firstEventTimestamp": e[0]["timestamp"], "lastEventTimestamp": e[-1]["timestamp"]}
                   for n, e in sorted(streams.items()) if n.startswith(body.get("logStreamNamePrefix") or "") and e]
        return _page(out, "logStreams", {"NextToken": body.get("nextToken"), "MaxResults": body.get("limit")},
                     default_size=50, max_size=50, token_key="nextToken")


def _page(items: list[Any], key: str, body: Mapping[str, Any], *, default_size: int, max_size: int,
          token_key: str = "NextToken") -> dict[str, Any]:
    size = int(body.get("MaxResults") or default_size)
    if not 1 <= size <= max_size:
        raise _validation(f"MaxResults must be between 1 and {max_size}")
    token = body.get("NextToken")
    offset = int(token) if token and str(token).isdigit() else 0
    out: dict[str, Any] = {key: items[offset:offset + size]}
    if offset + size < len(items):
        out[token_key] = str(offset + size)
    return out


_SAGEMAKER_OPS = {
    "CreatePipeline": "create_pipeline", "UpdatePipeline": "update_pipeline", "DescribePipeline": "describe_pipeline",
    "DeletePipeline": "delete_pipeline", "StartPipelineExecution": "start_pipeline_execution",
    "DescribePipelineExecution": "describe_pipeline_execution",
    "ListPipelineExecutionSteps": "list_pipeline_execution_steps",
    "ListPipelineExecutions": "list_pipeline_executions", "StopPipelineExecution": "stop_pipeline_execution",
    "DescribeProcessingJob": "describe_processing_job",
}
_LOGS_OPS = {"FilterLogEvents": "filter_log_events", "GetLogEvents": "get_log_events",
             "DescribeLogStreams": "describe_log_streams"}
_WITH_REGION = {"create_pipeline", "start_pipeline_execution"}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSageMaker
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("fake sagemaker: " + format, *args)

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        service, _, operation = target.partition(".")
        method = (_SAGEMAKER_OPS if service == "SageMaker" else _LOGS_OPS if service == "Logs_20140328" else {}).get(operation)
        try:
            body = json.loads(raw or b"{}")
            self.fake.requests.append((target, body))
            if method is None:
                raise AwsError("UnknownOperationException", f"the fake does not implement {target!r}")
            args: list[Any] = [body]
            if method in _WITH_REGION:
                match = _CREDENTIAL_REGION.search(self.headers.get("Authorization", ""))
                args.append(match["region"] if match else "us-east-1")
            self._send(200, getattr(self.fake, method)(*args))
        except AwsError as exc:
            self._send(exc.status, {"__type": exc.code, "message": exc.message})
        except (KeyError, TypeError, ValueError) as exc:
            self._send(400, {"__type": "ValidationException", "message": f"bad request: {exc!r}"})

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-RequestId", secrets.token_hex(8))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> int:
    """Serve the fake and moto's S3 for the ``sagemaker-local`` example stack until interrupted."""
    import argparse
    import os
    import signal
    import sys
    from pathlib import Path

    from tests.servers.moto_s3 import KEY, SECRET, MotoS3

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--s3-port", type=int, default=5005)
    parser.add_argument("--bucket", default="flowyml-local")
    args = parser.parse_args()
    with MotoS3(port=args.s3_port) as s3:
        s3.make_bucket(args.bucket)
        aws = {"AWS_ENDPOINT_URL": s3.url, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
        env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.defpath]),
               "HOME": os.environ.get("HOME", "/tmp"), **aws}
        with FakeSageMaker(os.getcwd(), base_env=env, port=args.port) as fake:
            print(f"fake SageMaker on {fake.url}, running steps in {fake.workdir}; S3 (moto) on {s3.url}", flush=True)
            print("export " + " ".join(f"{k}={v}" for k, v in {"FLOWYML_SAGEMAKER_ENDPOINT": fake.url, **aws}.items()),
                  flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
