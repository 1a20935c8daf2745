"""Following a run's logs: each line once, finished pods not read again, running pods read from their last line.

The run goes through the real ``kubernetes`` client and the fake API server,
which runs each pod as a process and serves its log with kubelet timestamps
(and ``sinceSeconds``), so what is counted here are the client's real calls.
"""

from __future__ import annotations

from collections import Counter

from flowyml_kubernetes.logs import run_entries, stamp_order
from flowyml_kubernetes.manifests import LABEL_RUN

LOG_PATH = r"/api/v1/namespaces/[^/]+/pods/(?P<pod>[^/]+)/log$"


def test_timestamps_order_by_value_not_by_text():
    # Go drops trailing zeros of the nanoseconds: as text, ".1Z" sorts before ".09Z".
    assert stamp_order("2026-12-03T17:00:05.1Z") > stamp_order("2026-12-03T17:00:05.09Z")
    assert stamp_order("2026-12-03T17:00:05Z") < stamp_order("2026-12-03T17:00:05.000000001Z")
    assert stamp_order("2026-12-03T18:00:05+01:00") == stamp_order("2026-12-03T17:00:05Z")
    assert stamp_order("loading with factor 3") is None
    assert stamp_order("2026-13-03T17:00:05Z") is None


def test_follow_reads_each_line_once_and_stops_reading_finished_pods(k8s_project):
    import re

    from flowyml_core.pipeline import run_on_stack
    from flowyml_kubernetes.orchestrator import KubernetesOrchestrator

    fake = k8s_project.fake
    stack = k8s_project.resolve()
    # `right` sleeps, so the run outlives `prep`, `left` and the orchestrator's first lines by many polls.
    submitted = run_on_stack(k8s_project.pipeline(), stack, context={"sleep_seconds": 3.0}, wait=False).submission
    orchestrator = KubernetesOrchestrator(stack.executor.config)

    entries = list(orchestrator.stream_logs(submitted.job_id, poll_interval=0.1))

    assert entries[-1]["is_finished"] and entries[-1]["status"] == "completed"
    followed = [(e["unit"], e["timestamp"], e["message"]) for e in entries[:-1]]
    assert followed, "the run wrote log lines"
    namespace = stack.executor.config.namespace
    run_label = fake.job_objects("flowyml.io/role=orchestrator")[0]["metadata"]["labels"][LABEL_RUN]
    everything = [(e["unit"], e["timestamp"], e["message"]) for e in run_entries(orchestrator.api, namespace, run_label)]
    assert Counter(followed) == Counter(everything), "every line of every pod, none twice"
    assert any(unit == "prep" and "loading with factor 3" in message for unit, _, message in followed)

    reads: dict[str, list[dict]] = {}
    for call in fake.calls_to("GET", LOG_PATH):
        reads.setdefault(re.search(LOG_PATH, call.path).group("pod"), []).append(call.query)
    polls = len(fake.calls_to("GET", r"/api/v1/namespaces/[^/]+/pods$"))
    prep_pod = next(pod for pod in reads if "-prep-" in pod)
    # The follower (not counting run_entries' one read above) read prep a few times while it ran, then once more.
    assert len(reads[prep_pod]) - 1 < polls / 3, (len(reads[prep_pod]), polls)
    for pod, queries in reads.items():
        # Whole logs until the pod has written a line (the first reads find it empty), then only the end of it.
        kinds = "".join("S" if "sinceSeconds" in q else "F" for q in queries[:-1])  # the last is run_entries' read
        assert "SF" not in kinds, f"{pod} was read whole again after its first lines: {kinds}"
    right_pod = next(pod for pod in reads if "-right-" in pod)
    assert "S" in "".join("S" if "sinceSeconds" in q else "F" for q in reads[right_pod]), "a running pod is read by its end"
