"""Names Vertex AI accepts, made from names people choose.

Vertex refuses a job id that does not match ``^[a-z][-a-z0-9]{0,127}$``, and
pipeline and step names are free text ("2024 forecast", "Train Model").
Every id made here starts with a letter and fits the limit; when a long name
is cut, the run id is kept whole, so two runs of one pipeline never share a
job id.
"""

from __future__ import annotations

import hashlib
import re

#: What Vertex accepts as a PipelineJob id (and KFP as a task key).
RESOURCE_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
#: Display names of jobs and tasks: any text, at most this many characters.
DISPLAY_NAME_LIMIT = 128
#: Run ids longer than this are shortened (with a digest) before joining a job id.
_RUN_PART_LIMIT = 64


def kfp_name(text: str, limit: int = 128) -> str:
    """Lowercase letters, digits and dashes, no dash at either end (may start with a digit, may be empty)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    return name[:limit].rstrip("-")


def resource_id(text: str, limit: int = 128, prefix: str = "p") -> str:
    """``text`` as an id that matches :data:`RESOURCE_ID` within ``limit`` characters.

    A name that does not start with a letter ("2024 forecast", "3rd step")
    gets ``prefix-`` in front rather than losing its digits.
    """
    name = kfp_name(text, limit)
    if not name[:1].isalpha():
        name = f"{prefix}-{name}" if name else prefix
        name = name[:limit].rstrip("-")
    return name


def _run_part(run_id: str) -> str:
    """The run id as it appears in job ids: itself when it is already a valid part.

    A run id that had to be changed (upper case, other characters) or cut gets
    a digest of the original, so distinct run ids stay distinct job ids.
    """
    part = kfp_name(run_id, _RUN_PART_LIMIT)
    if part == run_id and part:
        return part
    digest = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:12]
    return f"{part[:_RUN_PART_LIMIT - 13]}-{digest}".lstrip("-")


def job_id(pipeline_name: str, run_id: str) -> str:
    """``<pipeline>-<run id>``: the pipeline name is what gets cut, never the run id."""
    run = _run_part(run_id)
    head = resource_id(pipeline_name, limit=127 - len(run))
    return f"{head}-{run}"


def display_name(text: str, suffix: str = "") -> str:
    """``text`` + ``suffix`` within :data:`DISPLAY_NAME_LIMIT` characters; ``text`` is what gets cut."""
    room = DISPLAY_NAME_LIMIT - len(suffix)
    if room <= 0:
        return suffix[-DISPLAY_NAME_LIMIT:]
    return text[:room] + suffix


def label_value(value: str) -> str:
    """A Vertex label value: lowercase letters, digits, ``_`` and ``-``, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
