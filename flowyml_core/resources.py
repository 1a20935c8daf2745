"""Resource settings for steps and groups.

Units are validated when the object is made, so a typo such as ``"4GB"`` fails
where it was written rather than minutes later on a remote machine.
``DockerConfig`` lives in :mod:`flowyml_core.container` (every ``import
flowyml_core.step`` loads this module; few pipelines build images) and is
still importable from here.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from flowyml_core.errors import DefinitionError

# Patterns as text, compiled (and cached by ``re``) on first use: not at import.
_CPU = r"^(\d+(\.\d+)?|\d+m)$"
_MEMORY = r"^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$"
_MEMORY_FACTORS = {
    None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
CPU_HELP = 'CPU is a number of cores ("2", "0.5") or millicores ("500m")'
BYTES_HELP = 'bytes with a Kubernetes suffix: "512Mi", "4Gi", "1G" (not "4GB")'
MEMORY_HELP = f"memory is {BYTES_HELP}"


def parse_cpu(value: str | int | float, field: str = "cpu") -> float:
    """Cores as a float: ``"500m"`` → 0.5."""
    text = str(value).strip()
    if not re.match(_CPU, text):
        raise DefinitionError(f"invalid {field} {value!r}: {CPU_HELP}")
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def parse_memory(value: str | int, field: str = "memory") -> int:
    """Bytes as an int: ``"4Gi"`` → 4294967296.

    ``field`` names the setting in the error (``disk_size`` is bytes too).
    """
    text = str(value).strip()
    match = re.match(_MEMORY, text)
    if not match:
        raise DefinitionError(f"invalid {field} {value!r}: {field} is {BYTES_HELP}")
    return int(float(match.group(1)) * _MEMORY_FACTORS[match.group(3)])


def _check_cpu(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        parse_cpu(value, attribute.name)


def _check_bytes(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        parse_memory(value, attribute.name)


def _check_count(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DefinitionError(f"invalid {attribute.name} {value!r}: {attribute.name} is a whole number >= 0 (e.g. 2)")


def _check_optional_str(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise DefinitionError(
            f"invalid {attribute.name} {value!r}: {attribute.name} is a non-empty string or None"
            + (' (e.g. "nvidia-tesla-t4")' if attribute.name == "gpu" else "")
        )


def _optional_str(value: Any) -> Any:
    """Numbers as text (``cpu=2`` is ``"2"``); anything else is left for the validator to name."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


@attrs.define(frozen=True)
class ResourceConfig:
    """What one step (or one group, merged by maximum) needs to run."""

    cpu: str | None = attrs.field(default=None, converter=_optional_str, validator=_check_cpu)
    memory: str | None = attrs.field(default=None, converter=_optional_str, validator=_check_bytes)
    gpu: str | None = attrs.field(default=None, validator=_check_optional_str)
    gpu_count: int = attrs.field(default=0, validator=_check_count)
    disk_size: str | None = attrs.field(default=None, converter=_optional_str, validator=_check_bytes)
    machine_type: str | None = attrs.field(default=None, validator=_check_optional_str)

    @property
    def cpu_cores(self) -> float | None:
        return None if self.cpu is None else parse_cpu(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)

    def merge(self, other: ResourceConfig | None) -> ResourceConfig:
        """The smallest config that satisfies both: field by field maximum."""
        if other is None:
            return self

        def bigger(a: str | None, b: str | None, parse: Any) -> str | None:
            if a is None or b is None:
                return a if b is None else b
            return a if parse(a) >= parse(b) else b

        return ResourceConfig(
            cpu=bigger(self.cpu, other.cpu, parse_cpu),
            memory=bigger(self.memory, other.memory, parse_memory),
            gpu=self.gpu or other.gpu,
            gpu_count=max(self.gpu_count, other.gpu_count),
            disk_size=bigger(self.disk_size, other.disk_size, parse_memory),
            machine_type=self.machine_type or other.machine_type,
        )


def __getattr__(name: str) -> Any:
    if name == "DockerConfig":  # its home before it moved to flowyml_core.container
        from flowyml_core.container import DockerConfig

        return DockerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
