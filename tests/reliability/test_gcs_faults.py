"""GCS stores behind a faulty network: runs complete or fail cleanly, no partial artifact is ever read;
kill -9 and concurrent writers on the emulator."""

from __future__ import annotations

import json

import attrs
import pytest

from tests.reliability.gcs_faults import DEADLINE, as_dict, emulator_env, ensure_gcs, gcs_spec, pipeline_runs_under_faults
from tests.reliability.stores import concurrency_test, crash_test

pytestmark = pytest.mark.skipif(not ensure_gcs(), reason="flowyml-gcs is not installed")


def test_pipeline_runs_through_drops_503s_and_delays(tmp_path, gcs_emulator, fault_proxy, gcs_bucket):
    report = pipeline_runs_under_faults(tmp_path, gcs_emulator, fault_proxy, gcs_bucket, runs_per_fault=2, seeds=1)
    summary = json.dumps(as_dict(report), indent=1)
    assert report.runs == 8 and report.completed + report.failed_cleanly == report.runs, summary
    assert report.unclean == 0 and report.torn_in_run == 0, summary
    assert report.partial_reads == 0 and report.refused_reads == 0, summary
    assert report.artifacts_checked > 0 and report.cache_entries_checked > 0, summary
    assert report.faults["drop"] and report.faults["error503"] and report.faults["delay"], summary
    assert report.completed > 0, summary


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the suite's 300 s per-test limit is for default-size tests
def test_pipeline_runs_under_faults_long(tmp_path, gcs_emulator, fault_proxy, gcs_bucket):
    report = pipeline_runs_under_faults(tmp_path, gcs_emulator, fault_proxy, gcs_bucket, runs_per_fault=15, seeds=5,
                                        outage_runs=2)
    summary = json.dumps(as_dict(report), indent=1)
    assert report.failed_cleanly >= 2, summary  # the outage: those runs must fail, cleanly
    outage = [r for r in report.by_fault if r["faults"].startswith("outage")]
    # within the store's deadline (the cache reads before it are answered), plus start-up and slack
    assert outage and outage[0]["seconds_per_run"] < DEADLINE + 10, summary
    assert report.unclean == 0 and report.torn_in_run == 0, summary
    assert report.partial_reads == 0 and report.refused_reads == 0, summary


def test_kill_9_during_gcs_writes(tmp_path, gcs_emulator, gcs_bucket):
    spec = gcs_spec(gcs_bucket, gcs_emulator.url, "crash")
    report = crash_test(tmp_path, rounds=5, count=100, names=20, spec=spec, worker_env=emulator_env())
    summary = json.dumps(attrs.asdict(report), indent=1)
    assert report.completed_writes > 5 and report.cache_hits_verified > 0, summary
    assert report.torn == 0 and report.detected_corrupt == 0 and report.lost_acknowledged == 0, summary


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the suite's 300 s per-test limit is for default-size tests
def test_kill_9_during_gcs_writes_long(tmp_path, gcs_emulator, gcs_bucket):
    spec = gcs_spec(gcs_bucket, gcs_emulator.url, "crash")
    report = crash_test(tmp_path, rounds=20, count=1000, names=50, spec=spec, worker_env=emulator_env(), seed=5)
    summary = json.dumps(attrs.asdict(report), indent=1)
    assert report.torn == 0 and report.detected_corrupt == 0 and report.lost_acknowledged == 0, summary


def test_concurrent_processes_on_gcs(tmp_path, gcs_emulator, gcs_bucket):
    report = concurrency_test(tmp_path, processes=(2, 3), ops=60, keys=3,
                              spec_for=lambda root: gcs_spec(gcs_bucket, gcs_emulator.url, root.name),
                              worker_env=emulator_env())
    summary = json.dumps(attrs.asdict(report), indent=1)
    assert report.verified_reads > 10, summary
    assert report.corrupt == 0 and report.integrity_errors == 0, summary
