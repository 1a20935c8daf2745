"""The CLI's rough edges: closed pipes, Ctrl-C, the active stack removed, --json failures, hostile names, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowyml_core import Pipeline, step
from flowyml_core.progress import Progress
from tests.conftest import FLOWYML
from tests.core.helpers import write

SLOW = """
    import time
    from pathlib import Path
    from flowyml_core import Pipeline, step

    @step(outputs=["a"])
    def first():
        return 1

    @step(inputs=["a"], outputs=["b"])
    def slow_train(a, seconds: float = 0.0):
        Path("started").write_text("yes")
        time.sleep(seconds)
        return a

    @step(inputs=["b"], outputs=["c"])
    def last(b):
        return b

    pipeline = Pipeline("slow", [first, slow_train, last])
"""


@pytest.fixture
def slow(project: Path) -> Path:
    write(project / "pipe.py", SLOW)
    return project


def popen(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(FLOWYML), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- a closed pipe (flowyml … | head) ---------------------------------------------------------
@pytest.mark.parametrize("args", [["plugins", "--json"], ["stack", "list"],
                                  ["run", "pipe.py:pipeline", "--stack", "local", "--param", "seconds=0.5"]])
def test_a_closed_pipe_ends_quietly(slow, args):
    proc = popen(args, slow)
    if args[0] == "run":
        proc.stdout.readline()  # like `head -1`: read the first line, then go away while steps still report
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert stderr == "", stderr  # no "on_step_end hook failed (BrokenPipeError)", no "Exception ignored"


# -- Ctrl-C ---------------------------------------------------------------------------------------
def test_ctrl_c_names_the_running_step(slow):
    proc = popen(["run", "pipe.py:pipeline", "--stack", "local", "--param", "seconds=60"], slow)
    deadline = time.monotonic() + 60
    while not (slow / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == "interrupted while running step 'slow_train' (1/3 steps had ended)\n", err
    assert "[1/3] first" in out


PARALLEL = """
    import time
    from pathlib import Path
    from flowyml_core import Pipeline, step

    @step(outputs=["a"])
    def first():
        return 1

    @step(inputs=["a"], outputs=["b"])
    def long_one(a):
        Path("started-one").write_text("yes")
        time.sleep(60)

    @step(inputs=["a"], outputs=["c"])
    def long_two(a):
        Path("started-two").write_text("yes")
        time.sleep(60)

    pipeline = Pipeline("parallel", [first, long_one, long_two])
"""


def test_ctrl_c_ends_a_parallel_run_at_once_and_its_history_keeps_what_ended(project):
    """Steps in threads cannot be stopped, but the process must not wait for them (it waited 60 s)."""
    write(project / "pipe.py", PARALLEL)
    with (project / "stacks.toml").open("a", encoding="utf-8") as f:
        f.write('\n[stacks.wide]\nexecutor = { flavor = "local", max_workers = 2 }\n'
                'artifact_store = { flavor = "local", path = ".flowyml/artifacts" }\n'
                'cache_store = { flavor = "local", path = ".flowyml/cache" }\n')
    proc = popen(["run", "pipe.py:pipeline", "--stack", "wide", "--run-id", "cut1"], project)
    deadline = time.monotonic() + 60
    while not ((project / "started-one").exists() and (project / "started-two").exists()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    out, err = proc.communicate(timeout=50)
    assert time.monotonic() - interrupted < 20, "Ctrl-C waited for the steps still running"
    assert proc.returncode == 130, err
    assert "interrupted while running steps 'long_one', 'long_two'" in err, err
    shown = subprocess.run([str(FLOWYML), "runs", "show", "cut1", "--json"], cwd=project, capture_output=True,
                           text=True, timeout=60)
    entry = json.loads(shown.stdout)
    assert entry["status"] == "cancelled", entry
    assert {name: s["status"] for name, s in entry["steps"].items()} == {"first": "completed"}, entry


def test_running_steps_are_found_in_every_thread_and_guessed_otherwise():
    release = threading.Event()

    @step(outputs=["a"])
    def left():
        release.wait(10)

    @step(outputs=["b"])
    def right():
        release.wait(10)

    @step(inputs=["a", "b"], outputs=["c"])
    def join(a, b):
        return None

    pipeline = Pipeline("two", [left, right, join])
    progress = Progress(pipeline, "local", open(os.devnull, "w"), tty=False)
    workers = [threading.Thread(target=s.func) for s in (left, right)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.1)
        assert progress.running_steps(sys._current_frames().values()) == (["left", "right"], True)
    finally:
        release.set()
        for worker in workers:
            worker.join()
    # Steps running in other processes leave no frame here: the steps ready to run are named, as a guess.
    assert progress.running_steps([]) == (["left", "right"], False)
    progress.ended.update({"left", "right"})
    assert "while step 'join' was running or about to run" in progress.interrupted([])


# -- removing the active stack --------------------------------------------------------------------
def test_removing_the_active_stack_warns_and_clears_the_choice(project, run_cli):
    write(project / "stacks.toml", '[stacks.threads]\nexecutor = { flavor = "local", max_workers = 2 }\n')
    assert run_cli("stack", "use", "threads", cwd=project).returncode == 0
    out = run_cli("stack", "remove", "threads", cwd=project)
    assert out.returncode == 0 and "removed stack threads" in out.stdout
    assert out.stderr == (
        "warning: stack 'threads' was the active one (chosen with flowyml stack use); that choice is cleared\n"
        "warning: the active stack is now local (fallback)\n"
    )
    assert not (project / ".flowyml" / "active-stack").exists()
    listing = json.loads(run_cli("stack", "list", "--json", cwd=project).stdout)
    assert (listing["active"], listing["active_because"]) == ("local", "fallback")


def test_removing_the_stack_flowyml_stack_names_says_so(project, run_cli):
    write(project / "stacks.toml", '[stacks.a]\nexecutor = "local"\n[stacks.b]\nexecutor = "local"\n')
    out = run_cli("stack", "remove", "a", cwd=project, env={"FLOWYML_STACK": "a"})
    assert out.returncode == 0
    assert "FLOWYML_STACK still names the removed stack 'a'; unset it or set it to another stack" in out.stderr
    later = run_cli("stack", "show", cwd=project, env={"FLOWYML_STACK": "a"})
    assert "chosen by FLOWYML_STACK; unset FLOWYML_STACK or set it to a known stack" in later.stderr


# -- --json failures -------------------------------------------------------------------------------
def test_json_on_failure_prints_a_json_error(project, run_cli):
    write(project / "stacks.toml", '[stacks.bad]\nexecutor = { flavor = "local", no_such_option = 1 }\n')
    invalid = run_cli("stack", "validate", "bad", "--json", cwd=project)
    assert invalid.returncode == 1
    data = json.loads(invalid.stdout)
    assert data["name"] == "bad" and data["valid"] is False
    assert data["problems"] == [f"{project / 'stacks.toml'}: stack 'bad', executor 'local': unknown option 'no_such_option' "
                                "(options: isolation, max_workers)"]
    unknown = run_cli("stack", "show", "nope", "--json", cwd=project)
    assert unknown.returncode == 1 and "unknown stack 'nope'" in json.loads(unknown.stdout)["error"]
    assert json.loads(unknown.stdout)["command"] == "stack show"
    write(project / "stacks.toml", "[stacks.broken\n")
    broken = run_cli("stack", "list", "--json", cwd=project)
    assert broken.returncode == 1 and "invalid TOML" in json.loads(broken.stdout)["error"]


# -- hostile stack names ------------------------------------------------------------------------------
HOSTILE = '[stacks."evil\\u001b[2J\\nfake"]\nexecutor = "local"\n[stacks.ok]\nexecutor = { flavor = "local", "k\\u001b[31m" = 1 }\n'


def test_control_characters_in_names_are_shown_escaped(project, run_cli):
    write(project / "stacks.toml", HOSTILE)
    outputs = [
        run_cli("stack", "list", cwd=project),
        run_cli("stack", "show", "evil\x1b[2J\nfake", cwd=project),
        run_cli("stack", "use", "evil\x1b[2J\nfake", cwd=project),
        run_cli("stack", "show", "ok", cwd=project),
        run_cli("stack", "add", "new\x1b[1m", "--executor", "local", cwd=project),
        run_cli("run", "pipe.py:p", "--stack", "evil\x1b[2J\nfake", cwd=project),
    ]
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert "\x1b" not in text
    assert "evil\\x1b[2J\\nfake" in outputs[0].stdout and "stack evil\\x1b[2J\\nfake (" in outputs[1].stdout
    assert "active stack: evil\\x1b[2J\\nfake" in outputs[2].stdout and "k\\x1b[31m = 1" in outputs[3].stdout
    assert "added stack new\\x1b[1m" in outputs[4].stdout


# -- secrets --------------------------------------------------------------------------------------------
def test_options_are_masked_by_name_when_the_plugin_is_unavailable(project, run_cli):
    write(project / "stacks.toml", """
        [stacks.off]
        executor = { flavor = "echo", token = "tok-LEAK1", prefix = "P" }
        cache_store = { flavor = "memory", signing_key = "key-LEAK2", auth = { password = "pw-LEAK3", user = "me" }, credentials = { json = "cr-LEAK4" }, secret_ref = "${env:SOME_SECRET}" }
    """)
    for args in (["stack", "show", "off"], ["stack", "show", "off", "--json"]):
        out = run_cli(*args, cwd=project, env={"FLOWYML_DISABLE_PLUGINS": "testplugin"})
        assert out.returncode == 0, out.stderr
        assert "LEAK" not in out.stdout and "****" in out.stdout
        assert "PROBLEM" in out.stdout or "problem" in out.stdout  # the plugin is off: no config class to ask
    shown = json.loads(run_cli("stack", "show", "off", "--json", cwd=project,
                               env={"FLOWYML_DISABLE_PLUGINS": "testplugin"}).stdout)["components"]
    assert shown["executor"]["options"] == {"token": "****", "prefix": "P"}
    assert shown["cache_store"]["options"] == {"signing_key": "****", "auth": {"password": "****", "user": "me"},
                                               "credentials": {"json": "****"}, "secret_ref": "${env:SOME_SECRET}"}


def test_resolved_secrets_never_reach_the_run_summary(project, run_cli):
    write(project / "pipe.py", SLOW)
    write(project / "stacks.toml", """
        [stacks.sec]
        executor = "local"
        cache_store = { flavor = "local", path = ".flowyml/cache-${env:CACHE_TOKEN}" }
    """)
    env = {"CACHE_TOKEN": "SECRETTOKEN987"}
    first = run_cli("run", "pipe.py:pipeline", "--stack", "sec", cwd=project, env=env)
    again = run_cli("run", "pipe.py:pipeline", "--stack", "sec", cwd=project, env=env)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "fully cached" in again.stdout and "cache: " in again.stdout  # the line that used to show the value
    assert "SECRETTOKEN987" not in first.stdout + first.stderr + again.stdout + again.stderr
    assert "cache-****" in again.stdout
