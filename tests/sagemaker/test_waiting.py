"""Waiting on an execution: transient API errors are retried a few times, others end the wait at once."""

from __future__ import annotations

import pytest

from flowyml_core.remote import MAX_TRANSIENT_ERRORS, wait_until_finished
from flowyml_core.results import ExecutionStatus
from flowyml_sagemaker.clients import SageMakerAPIError


def statuses(*outcomes):
    """A status reader that returns (or raises) ``outcomes`` in turn, and records the job ids it was asked for."""
    asked = []

    def read(job_id):
        asked.append(job_id)
        outcome = outcomes[len(asked) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return read, asked


def test_transient_errors_are_retried_until_the_execution_ends():
    throttled = SageMakerAPIError("reading failed: ThrottlingException: Rate exceeded", "ThrottlingException", True)
    read, asked = statuses(ExecutionStatus.RUNNING, throttled, throttled, ExecutionStatus.COMPLETED)
    assert wait_until_finished(read, "arn:x", None, 0.001, "SageMaker") is ExecutionStatus.COMPLETED
    assert asked == ["arn:x"] * 4


def test_too_many_transient_errors_or_a_permanent_one_end_the_wait():
    throttled = SageMakerAPIError("ThrottlingException", "ThrottlingException", True)
    read, asked = statuses(*[throttled] * MAX_TRANSIENT_ERRORS)
    with pytest.raises(SageMakerAPIError, match="ThrottlingException"):
        wait_until_finished(read, "arn:x", None, 0.001, "SageMaker")
    assert len(asked) == MAX_TRANSIENT_ERRORS
    denied = SageMakerAPIError("AccessDeniedException: no", "AccessDeniedException", False)
    read, asked = statuses(denied)
    with pytest.raises(SageMakerAPIError, match="AccessDenied"):
        wait_until_finished(read, "arn:x", None, 0.001, "SageMaker")
    assert len(asked) == 1
