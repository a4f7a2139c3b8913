"""How delegates treat a model on a virtual phone: which nodes they take, how fast, how they fail.

Pure logic for the benchmark_model stand-in: a profile's `sim:` settings (farm.profiles) and a
model's op sequence (farm.models.ModelInfo) in, a `DelegatePlan` out. Partitions are the maximal
runs of accepted nodes in execution order (the sample models are chains, where this is what the
TFLite partitioner yields).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from farm.models import ModelInfo
from farm.profiles import Accelerator, Failure, Gpu, SimSettings

# Ops the XNNPACK delegate takes (TFLite's xnnpack_delegate.cc, float and QS8 kernels).
XNNPACK_OPS = frozenset(
    {
        "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CEIL", "CONCATENATION", "CONV_2D",
        "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "ELU", "FLOOR",
        "FULLY_CONNECTED", "GELU", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "MAX_POOL_2D",
        "MAXIMUM", "MEAN", "MINIMUM", "MUL", "NEG", "PAD", "PRELU", "QUANTIZE", "RELU",
        "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "ROUND", "RSQRT", "SLICE",
        "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQRT", "SQUARE", "SQUARED_DIFFERENCE",
        "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)  # fmt: skip

# The GPU delegate's ops as the shipped profiles give them; it partitions a graph with these on a
# phone whose profile has no GPU (`gpu: null`), before it finds no GPU to run them on.
GPU_DELEGATE_OPS = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
    "HARD_SWISH", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "RELU", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "SOFTMAX", "SUB", "TANH", "TRANSPOSE_CONV",
)  # fmt: skip
NO_GPU = Gpu(ops=list(GPU_DELEGATE_OPS))

# What the GPU delegate logs on a phone without OpenCL and with OpenGL ES below 3.1 (TFLite's
# opencl_wrapper.cc and gl/api2.cc): dlopen of libOpenCL.so (and the Pixel and car variants)
# fails, the ICD loader finds no clGetPlatformIDs, and the OpenGL backend needs ES 3.1.
OPENCL_DLOPEN_FAILED = (
    'Failed to load OpenCL library with dlopen: dlopen failed: library "libOpenCL-car.so" not '
    "found. Trying ICD loader."
)
OPENCL_MISSING = "Can not open OpenCL library on this device - undefined symbol: clSetPerfHintQCOM"
OPENGL_TOO_OLD = "OpenGL ES 3.1 or above is required to use OpenGL inference."

KERNEL_NAMES = {
    "XNNPACK": "TfLiteXNNPackDelegate",
    "GPU": "TfLiteGpuDelegateV2",
    "NNAPI": "TfLiteNnapiDelegate",
    "Hexagon": "TfLiteHexagonDelegate",
}


def partitions(accepted: list[bool], max_partitions: int = 0) -> list[list[int]]:
    """Node indices of each partition: maximal runs of accepted nodes in execution order.

    With `max_partitions` > 0 only the largest that many are kept (earlier first on ties),
    as TFLite's `max_delegated_partitions` does.
    """
    runs: list[list[int]] = []
    current: list[int] = []
    for index, ok in enumerate(accepted):
        if ok:
            current.append(index)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    if max_partitions > 0 and len(runs) > max_partitions:
        keep = sorted(range(len(runs)), key=lambda i: (-len(runs[i]), i))[:max_partitions]
        runs = [runs[i] for i in sorted(keep)]
    return runs


@dataclass
class DelegatePlan:
    """What one delegate does to one model."""

    name: str  # provider name as the tool prints it: GPU, NNAPI, Hexagon, XNNPACK
    accelerator: Accelerator | None  # None for XNNPACK (the CPU)
    node_count: int
    parts: list[list[int]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # op -> reason, first seen order
    failure: Failure | None = None

    @property
    def kernel(self) -> str:
        """The delegate kernel's name in `Replacing ... with delegate (<kernel>)`."""
        return KERNEL_NAMES[self.name]

    @property
    def delegated(self) -> set[int]:
        """Indices of the nodes the delegate runs."""
        return {i for part in self.parts for i in part}

    @property
    def full(self) -> bool:
        """The delegate runs the whole graph as one kernel."""
        return len(self.parts) == 1 and len(self.parts[0]) == self.node_count


def matching_failure(acc: Accelerator, model: ModelInfo) -> Failure | None:
    """The first of the accelerator's failure modes that applies to this model."""
    name = PurePosixPath(model.path).name
    for failure in acc.failures:
        if failure.when == "always":
            return failure
        if failure.when == "quantized" and model.quantized:
            return failure
        if failure.when == "float" and not model.quantized:
            return failure
        if failure.when == "has_op" and failure.op in model.op_sequence:
            return failure
        if failure.when == "model_glob" and (
            fnmatch.fnmatchcase(name, failure.model_glob)
            or fnmatch.fnmatchcase(model.path, failure.model_glob)
        ):
            return failure
    return None


def plan_accelerator(
    name: str, acc: Accelerator, model: ModelInfo, *, max_partitions: int = 0
) -> DelegatePlan:
    """Which nodes of `model` the accelerator takes, and whether it fails on it."""
    takes_type = acc.takes_quantized if model.quantized else acc.takes_float
    ops = set(acc.ops)
    accepted = []
    refused: dict[str, str] = {}
    for op in model.op_sequence:
        ok = takes_type and op in ops
        accepted.append(ok)
        if not ok and op not in refused:
            refused[op] = (
                "Operation is not supported."
                if op not in ops
                else "OP is supported, but tensor type/shape isn't compatible."
            )
    return DelegatePlan(
        name=name,
        accelerator=acc,
        node_count=model.node_count,
        parts=partitions(accepted, max_partitions),
        refused=refused,
        failure=matching_failure(acc, model),
    )


def plan_xnnpack(model: ModelInfo) -> DelegatePlan:
    """The XNNPACK delegate on the CPU (default or explicit)."""
    accepted = [op in XNNPACK_OPS for op in model.op_sequence]
    return DelegatePlan(
        name="XNNPACK", accelerator=None, node_count=model.node_count, parts=partitions(accepted)
    )


def nnapi_accelerator(sim: SimSettings, requested: str) -> Accelerator | None:
    """The NNAPI accelerator a run uses: the named one, else the runtime's first choice."""
    nnapi = sim.delegates.nnapi
    if nnapi is None or not nnapi.accelerators:
        return None
    if not requested:
        return nnapi.accelerators[0]
    for acc in nnapi.accelerators:
        if acc.name == requested:
            return acc
    return None


# --------------------------------------------------------------------------- cost model

# A reference core (cpu.speed 1.0): multiply-accumulates per microsecond.
MACS_PER_US = {("float", True): 10_000.0, ("float", False): 3_500.0}
MACS_PER_US[("int", True)] = MACS_PER_US[("float", True)] * 1.6
MACS_PER_US[("int", False)] = MACS_PER_US[("float", False)] * 1.3
NODE_OVERHEAD_US = 2.0
PARTITION_OVERHEAD_US = 120.0  # hand-over between CPU and a delegate, per partition


def effective_threads(num_threads: int, sim: SimSettings) -> float:
    """How many single-core equivalents `num_threads` yields on this CPU."""
    cores = sum(len(c.cpus) for c in sim.cpu.clusters) or 1
    n = 1 if num_threads <= 0 else min(num_threads, cores)
    return 1.0 + sim.cpu.thread_scaling * (n - 1)


def cpu_node_us(model: ModelInfo, sim: SimSettings, *, xnnpack: bool) -> list[float]:
    """Single-thread CPU time of each node on this phone, in microseconds."""
    rate = MACS_PER_US[("int" if model.quantized else "float", xnnpack)] * sim.cpu.speed
    return [macs / rate + NODE_OVERHEAD_US for macs in model.node_macs]
