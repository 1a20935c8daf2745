"""Machines and accelerators for Vertex AI jobs, chosen from a ``ResourceConfig``.

A CustomJob needs a machine type, not CPU and memory numbers; pipeline tasks
take CPU/memory limits and Vertex picks the machine. ``choose_machine_type``
returns the smallest machine of the catalogue below that has at least the
requested cores and memory, in a family that can carry the requested GPU.
"""

from __future__ import annotations

from typing import NamedTuple

from flowyml_core.errors import FlowymlError
from flowyml_core.resources import ResourceConfig

GIB = 2**30

#: Friendly GPU names → Vertex ``AcceleratorType`` names.
GPU_ALIASES = {
    "K80": "NVIDIA_TESLA_K80",
    "P4": "NVIDIA_TESLA_P4",
    "P100": "NVIDIA_TESLA_P100",
    "V100": "NVIDIA_TESLA_V100",
    "T4": "NVIDIA_TESLA_T4",
    "A100": "NVIDIA_TESLA_A100",
    "A100_40GB": "NVIDIA_TESLA_A100",
    "A100_80GB": "NVIDIA_A100_80GB",
    "L4": "NVIDIA_L4",
    "H100": "NVIDIA_H100_80GB",
    "H100_80GB": "NVIDIA_H100_80GB",
    "H100_MEGA": "NVIDIA_H100_MEGA_80GB",
    "H200": "NVIDIA_H200_141GB",
    "B200": "NVIDIA_B200",
}
KNOWN_GPUS = frozenset(GPU_ALIASES.values())


class Machine(NamedTuple):
    name: str
    cpus: int
    memory_gib: float


def _family(prefix: str, sizes: tuple[int, ...], gib_per_cpu: float) -> list[Machine]:
    return [Machine(f"{prefix}-{n}", n, n * gib_per_cpu) for n in sizes]


#: General-purpose machines Vertex AI training accepts, N1 first because it is
#: the family that carries T4/V100/P100/P4/K80 GPUs.
CPU_MACHINES: list[Machine] = [
    *_family("n1-highmem", (2,), 6.5),
    *_family("n1-standard", (4, 8, 16, 32, 64, 96), 3.75),
    *_family("n1-highmem", (4, 8, 16, 32, 64, 96), 6.5),
    *_family("n1-highcpu", (16, 32, 64, 96), 0.9),
    *_family("e2-highmem", (2, 4, 8, 16), 8.0),
]
N1_GPUS = frozenset({"NVIDIA_TESLA_K80", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_T4"})
#: GPUs that come with their own machine family: (machine prefix, GPUs per size) → Machine.
GPU_MACHINES: dict[str, list[tuple[int, Machine]]] = {
    "NVIDIA_TESLA_A100": [(n, Machine(f"a2-highgpu-{n}g", 12 * n, 85.0 * n)) for n in (1, 2, 4, 8)]
    + [(16, Machine("a2-megagpu-16g", 96, 1360.0))],
    "NVIDIA_A100_80GB": [(n, Machine(f"a2-ultragpu-{n}g", 12 * n, 170.0 * n)) for n in (1, 2, 4, 8)],
    "NVIDIA_L4": [(1, Machine("g2-standard-4", 4, 16.0)), (1, Machine("g2-standard-8", 8, 32.0)),
                  (1, Machine("g2-standard-12", 12, 48.0)), (1, Machine("g2-standard-16", 16, 64.0)),
                  (1, Machine("g2-standard-32", 32, 128.0)), (2, Machine("g2-standard-24", 24, 96.0)),
                  (4, Machine("g2-standard-48", 48, 192.0)), (8, Machine("g2-standard-96", 96, 384.0))],
    "NVIDIA_H100_80GB": [(8, Machine("a3-highgpu-8g", 208, 1872.0))],
    "NVIDIA_H100_MEGA_80GB": [(8, Machine("a3-megagpu-8g", 208, 1872.0))],
    "NVIDIA_H200_141GB": [(8, Machine("a3-ultragpu-8g", 224, 2952.0))],
    "NVIDIA_B200": [(8, Machine("a4-highgpu-8g", 224, 3968.0))],
}
DEFAULT_MACHINE = "n1-standard-4"


def machine_shape(name: str) -> Machine | None:
    """CPUs and memory of a machine type in the catalogue (None when flowyml does not know it)."""
    for machine in CPU_MACHINES:
        if machine.name == name:
            return machine
    for sizes in GPU_MACHINES.values():
        for _, machine in sizes:
            if machine.name == name:
                return machine
    prefix, _, size = name.rpartition("-")
    families = {"n1-standard": 3.75, "n1-highmem": 6.5, "n1-highcpu": 0.9, "e2-standard": 4.0, "e2-highmem": 8.0,
                "e2-highcpu": 1.0, "n2-standard": 4.0, "n2-highmem": 8.0, "n2-highcpu": 1.0, "c2-standard": 4.0}
    if prefix in families and size.isdigit():
        return Machine(name, int(size), int(size) * families[prefix])
    return None


def normalize_gpu(gpu: str | None) -> str | None:
    """``"t4"``, ``"nvidia-tesla-t4"`` or ``"NVIDIA_TESLA_T4"`` → ``"NVIDIA_TESLA_T4"``."""
    if not gpu:
        return None
    key = gpu.strip().upper().replace("-", "_").replace(" ", "_")
    if key in KNOWN_GPUS:
        return key
    if key in GPU_ALIASES:
        return GPU_ALIASES[key]
    if key.startswith("NVIDIA_") and key[len("NVIDIA_"):] in GPU_ALIASES:
        return GPU_ALIASES[key[len("NVIDIA_"):]]
    raise FlowymlError(
        f"unknown GPU {gpu!r} in a step's resources: use a Vertex AI accelerator type such as "
        f"{', '.join(sorted(KNOWN_GPUS))} (or T4, V100, A100, L4, H100)"
    )


def gpu_request(resources: ResourceConfig | None) -> tuple[str | None, int]:
    """(accelerator type, count); a GPU named with no count means one."""
    if resources is None:
        return None, 0
    gpu = normalize_gpu(resources.gpu)
    if gpu is None:
        if resources.gpu_count:
            raise FlowymlError(f"resources ask for gpu_count={resources.gpu_count} without naming the GPU (gpu='T4', …)")
        return None, 0
    return gpu, max(1, resources.gpu_count)


def choose_machine_type(resources: ResourceConfig | None, explicit: str | None = None) -> str:
    """The machine type for a CustomJob with these resources."""
    if resources is not None and resources.machine_type:
        return resources.machine_type
    if explicit:
        return explicit
    cpus = (resources.cpu_cores if resources else None) or 0.0
    memory = ((resources.memory_bytes if resources else None) or 0) / GIB
    gpu, count = gpu_request(resources)
    if gpu is None and not cpus and not memory:
        return DEFAULT_MACHINE
    if gpu is not None and gpu not in N1_GPUS:
        options = [m for n, m in GPU_MACHINES.get(gpu, []) if n >= count and m.cpus >= cpus and m.memory_gib >= memory]
        if not options:
            raise FlowymlError(
                f"no Vertex AI machine has {count} x {gpu} with {cpus:g} CPUs and {memory:g} GiB; "
                "lower the request or set machine_type in the step's resources"
            )
        return min(options, key=lambda m: (m.cpus, m.memory_gib)).name
    candidates = CPU_MACHINES if gpu is None else [m for m in CPU_MACHINES if m.name.startswith("n1-")]
    fitting = [m for m in candidates if m.cpus >= cpus and m.memory_gib >= memory]
    if not fitting:
        raise FlowymlError(
            f"no Vertex AI machine in flowyml's catalogue has {cpus:g} CPUs and {memory:g} GiB of memory; "
            "set machine_type in the step's resources"
        )
    return min(fitting, key=lambda m: (m.cpus, m.memory_gib)).name
