"""Instance types for SageMaker processing jobs, chosen from a ``ResourceConfig``.

A processing job needs an instance type, not CPU and memory numbers:
:func:`choose_instance_type` returns the smallest instance of the catalogue
below with at least the requested vCPUs, memory and GPUs (of the requested
kind). A test checks every entry against botocore's ``ProcessingInstanceType``
enum, which :func:`known_instance_types` reads to refuse a typo before
anything is submitted.
"""

from __future__ import annotations

from typing import NamedTuple

from flowyml_core.errors import FlowymlError
from flowyml_core.resources import ResourceConfig

GIB = 2**30
DEFAULT_INSTANCE = "ml.m5.large"


class Instance(NamedTuple):
    name: str
    cpus: int
    memory_gib: float
    gpu: str | None = None
    gpus: int = 0


_SIZES = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32, "9xlarge": 36, "12xlarge": 48,
          "16xlarge": 64, "18xlarge": 72, "24xlarge": 96, "48xlarge": 192}


def _family(family: str, sizes: tuple[str, ...], gib_per_cpu: float) -> list[Instance]:
    return [Instance(f"ml.{family}.{size}", _SIZES[size], _SIZES[size] * gib_per_cpu) for size in sizes]


#: CPU instances; the choice is the one with the fewest vCPUs, then the least memory, that fits.
CPU_INSTANCES: list[Instance] = [
    *_family("m5", ("large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge"), 4.0),
    *_family("c5", ("xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge"), 2.0),
    *_family("r5", ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge"), 8.0),
]
GPU_INSTANCES: list[Instance] = [
    Instance("ml.g4dn.xlarge", 4, 16, "T4", 1), Instance("ml.g4dn.2xlarge", 8, 32, "T4", 1),
    Instance("ml.g4dn.4xlarge", 16, 64, "T4", 1), Instance("ml.g4dn.8xlarge", 32, 128, "T4", 1),
    Instance("ml.g4dn.16xlarge", 64, 256, "T4", 1), Instance("ml.g4dn.12xlarge", 48, 192, "T4", 4),
    Instance("ml.g5.xlarge", 4, 16, "A10G", 1), Instance("ml.g5.2xlarge", 8, 32, "A10G", 1),
    Instance("ml.g5.4xlarge", 16, 64, "A10G", 1), Instance("ml.g5.8xlarge", 32, 128, "A10G", 1),
    Instance("ml.g5.16xlarge", 64, 256, "A10G", 1), Instance("ml.g5.12xlarge", 48, 192, "A10G", 4),
    Instance("ml.g5.24xlarge", 96, 384, "A10G", 4), Instance("ml.g5.48xlarge", 192, 768, "A10G", 8),
    Instance("ml.p3.2xlarge", 8, 61, "V100", 1), Instance("ml.p3.8xlarge", 32, 244, "V100", 4),
    Instance("ml.p3.16xlarge", 64, 488, "V100", 8),
]
#: GPU names people write → the catalogue's.
GPU_ALIASES = {"T4": "T4", "NVIDIA_TESLA_T4": "T4", "A10G": "A10G", "NVIDIA_A10G": "A10G", "V100": "V100",
               "NVIDIA_TESLA_V100": "V100"}


def normalize_gpu(gpu: str | None) -> str | None:
    if not gpu:
        return None
    key = gpu.strip().upper().replace("-", "_").replace(" ", "_")
    if key in GPU_ALIASES:
        return GPU_ALIASES[key]
    raise FlowymlError(
        f"unknown GPU {gpu!r} in a step's resources: the sagemaker executor chooses among "
        f"{', '.join(sorted(set(GPU_ALIASES.values())))}; or set machine_type = \"ml.…\" in the step's resources"
    )


def choose_instance_type(resources: ResourceConfig | None, default: str | None = None) -> str:
    """The instance type of a unit: its ``machine_type``, else ``default`` (the executor's
    ``instance_type``), else the smallest catalogue instance that fits its resources."""
    if resources is not None and resources.machine_type:
        return resources.machine_type
    if default:
        return default
    cpus = (resources.cpu_cores if resources else None) or 0.0
    memory = ((resources.memory_bytes if resources else None) or 0) / GIB
    gpu = normalize_gpu(resources.gpu if resources else None)
    count = max(1, resources.gpu_count) if gpu and resources is not None else 0
    if resources is not None and resources.gpu_count and gpu is None:
        raise FlowymlError(f"resources ask for gpu_count={resources.gpu_count} without naming the GPU (gpu='T4', …)")
    if gpu is None and not cpus and not memory:
        return DEFAULT_INSTANCE
    candidates = CPU_INSTANCES if gpu is None else [i for i in GPU_INSTANCES if i.gpu == gpu]
    fitting = [i for i in candidates if i.cpus >= cpus and i.memory_gib >= memory and i.gpus >= count]
    if not fitting:
        wanted = f"{cpus:g} vCPUs and {memory:g} GiB" + (f" with {count} x {gpu}" if gpu else "")
        raise FlowymlError(f"no SageMaker instance in flowyml's catalogue has {wanted}; set machine_type = \"ml.…\" "
                           "in the step's resources")
    return min(fitting, key=lambda i: (i.gpus, i.cpus, i.memory_gib)).name


def known_instance_types() -> frozenset[str]:
    """Every processing instance type botocore's service model knows (imports botocore)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("ProcessingInstanceType").enum)


def check_instance_type(name: str, where: str) -> None:
    """One line naming ``where`` when SageMaker would refuse ``name`` as a processing instance type."""
    known = known_instance_types()
    if name in known:
        return
    close = sorted(k for k in known if k.split(".")[1:2] == name.split(".")[1:2])[:6]
    hint = f" (this family has: {', '.join(close)})" if close else " such as ml.m5.xlarge"
    raise FlowymlError(f"{where}: {name!r} is not a SageMaker processing instance type{hint}")
