"""Is the fast delegate also right? Each delegate's outputs on fixed inputs against the CPU's.

Before the run (`prepare`), every model gets deterministic inputs made from its input
signature (or the user's .npy files), written to `accuracy/inputs/<model>/` in the run folder
with a manifest, and LiteRT on the host computes the reference outputs
(`accuracy/reference/<model>.bin`). On a device, after a cell's timed run (`check`), one untimed
benchmark_model invocation per (device, model, delegate variant) feeds those inputs (pushed
content-addressed, like models) and writes the output tensors, which are pulled to
`accuracy/outputs/<serial>/` and compared: a delegate with the same device's CPU, the CPU with
LiteRT on the host (a wrong CPU kernel is caught too).

Output files hold each output tensor's raw bytes one after another, in the model's output
order (what `--output_filepath` writes); input files hold one tensor's raw bytes.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from farm.android import paths
from farm.android.adb import join_command
from farm.bench.cell import (  # the cell's own launch, wait and pull steps
    CellHost,
    DeviceLost,
    Interrupted,
    forget_job,
    is_simulated,
    launch_job,
    model_path,
    pull_log,
    safe_name,
    wait_job,
)
from farm.bench.deploy import ensure_file, sha256_file
from farm.bench.flags import accuracy_args, benchmark_args
from farm.bench.parse import BenchmarkResult, parse_file
from farm.bench.plan import Cell, ModelRef
from farm.config import AccuracySettings, Config, DelegateSpec, Tolerance
from farm.errors import DeviceError, InputError, RemoteFileMissing
from farm.models import quiet_stderr
from farm.results.model import (
    Accuracy,
    AccuracyStatus,
    CellResult,
    Status,
    TensorAccuracy,
)

Array = npt.NDArray[Any]

ACCURACY_DIR = "accuracy"
DEVICE_CPU = "device-cpu"
HOST_LITERT = "host-litert"
# The plain CPU variant (the tool's defaults): the device's reference for its delegates.
REFERENCE_SPEC = DelegateSpec(kind="cpu")
REFERENCE_LABEL = "cpu-reference"

# Default limits per kind of arithmetic; `tolerance_for` picks one, the config overrides it.
EXACT = Tolerance(max_rel=1e-3, min_cosine=0.9999)  # CPU kernels, fp32
ACCELERATOR_FP32 = Tolerance(max_rel=1e-2, min_cosine=0.999)  # other fp32 kernels
FP16 = Tolerance(max_rel=5e-2, min_cosine=0.995)  # fp16 arithmetic (GPU precision loss, NPUs)
QUANTIZED = Tolerance(max_quanta=3)  # quantized outputs: a few steps of their scale

_INT_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
# A virtual phone's model engine makes outputs up without inference and says so.
_NO_INFERENCE = re.compile(r"farm virtual device: .*outputs .*without inference")
_UNKNOWN_FLAGS = re.compile(
    r"--(input_layer_value_files|input_layer_shape|input_layer|output_filepath)\b"
)


# ---------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, dtype, shape and quantization (scale 0: none)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """An integer tensor with a scale: its values stand for (q - zero_point) * scale."""
        return self.scale > 0 and self.dtype in _INT_TYPES

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_json(self) -> dict[str, Any]:
        """The spec as the manifest keeps it."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "scale": self.scale,
            "zero_point": self.zero_point,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TensorSpec:
        """Read a manifest entry."""
        return cls(
            name=str(d["name"]),
            dtype=str(d["dtype"]),
            shape=tuple(int(n) for n in d["shape"]),
            scale=float(d.get("scale") or 0.0),
            zero_point=int(d.get("zero_point") or 0),
        )


def _specs(details: Sequence[dict[str, Any]]) -> list[TensorSpec]:
    out = []
    for d in details:
        scale, zero_point = d.get("quantization") or (0.0, 0)
        out.append(
            TensorSpec(
                name=str(d["name"]),
                dtype=np.dtype(d["dtype"]).name,
                shape=tuple(int(n) for n in d["shape"]),
                scale=float(scale),
                zero_point=int(zero_point),
            )
        )
    return out


def _interpreter(path: Path) -> Any:
    """LiteRT on the host, tensors allocated; the runtime's own INFO lines kept off stderr."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
    return interpreter


def signature(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The model's inputs and outputs as LiteRT on the host allocates them."""
    interpreter = _interpreter(path)
    return _specs(interpreter.get_input_details()), _specs(interpreter.get_output_details())


# ---------------------------------------------------------------------------- inputs


def seeded_input(spec: TensorSpec, seed: int, model_sha256: str, index: int) -> Array:
    """A deterministic input: floats uniform in [-1, 1], quantized tensors over their whole
    integer range, other integers in [0, 100), booleans either way."""
    rng = np.random.default_rng([seed, int(model_sha256[:16], 16), index])
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, size=spec.shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=spec.shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = (int(info.min), int(info.max)) if spec.quantized else (0, min(99, info.max))
        return rng.integers(low, high, size=spec.shape, endpoint=True).astype(dtype)
    raise InputError(f"input {spec.name!r}: {spec.dtype} tensors cannot be fed from a file")


def user_input(spec: TensorSpec, file: Path, model: str) -> Array:
    """The user's .npy for this input, checked against the model's shape and dtype."""
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: not a readable .npy array: {exc}") from None
    if tuple(data.shape) != spec.shape:
        raise InputError(
            f"{file}: shape {tuple(data.shape)} does not match input {spec.name!r} of {model} "
            f"{spec.shape}"
        )
    dtype = np.dtype(spec.dtype)
    if data.dtype != dtype and not np.can_cast(data.dtype, dtype, casting="same_kind"):
        raise InputError(
            f"{file}: dtype {data.dtype} cannot stand for input {spec.name!r} of {model} "
            f"({spec.dtype})"
        )
    return np.ascontiguousarray(data.astype(dtype))


@dataclass(frozen=True)
class InputFile:
    """One input tensor's file in the run folder."""

    spec: TensorSpec
    file: str  # relative to the run folder
    sha256: str
    source: str  # "seeded" or the user's .npy path


@dataclass(frozen=True)
class ModelAccuracy:
    """A model's fixed inputs, its output signature and the host's reference outputs."""

    name: str
    sha256: str
    inputs: tuple[InputFile, ...]
    outputs: tuple[TensorSpec, ...]
    reference: str  # relative to the run folder
    seed: int

    def to_json(self) -> dict[str, Any]:
        """The manifest."""
        return {
            "model": self.name,
            "sha256": self.sha256,
            "seed": self.seed,
            "inputs": [
                i.spec.to_json() | {"file": i.file, "sha256": i.sha256, "source": i.source}
                for i in self.inputs
            ],
            "outputs": [o.to_json() for o in self.outputs],
            "reference": self.reference,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelAccuracy:
        """Read a manifest."""
        return cls(
            name=str(d["model"]),
            sha256=str(d["sha256"]),
            seed=int(d["seed"]),
            inputs=tuple(
                InputFile(
                    TensorSpec.from_json(i), str(i["file"]), str(i["sha256"]), str(i["source"])
                )
                for i in d["inputs"]
            ),
            outputs=tuple(TensorSpec.from_json(o) for o in d["outputs"]),
            reference=str(d["reference"]),
        )


def model_dir(name: str, sha256: str) -> str:
    """The folder name of a model's accuracy files."""
    return f"{safe_name(name)[:80]}-{sha256[:12]}"


def manifest_path(run_dir: Path, model: ModelRef | Cell) -> Path:
    """Where a model's accuracy manifest lives in the run folder."""
    name = model.name if isinstance(model, ModelRef) else model.model
    sha = model.sha256 if isinstance(model, ModelRef) else model.model_sha256
    return run_dir / ACCURACY_DIR / "inputs" / model_dir(name, sha) / "manifest.json"


def check_inputs(models: Sequence[ModelRef], settings: AccuracySettings) -> None:
    """Refuse, before anything is pushed, user inputs that no model has or that do not fit."""
    names: set[str] = set()
    for model in models:
        inputs, _ = signature(model.path)
        for spec in inputs:
            names.add(spec.name)
            if spec.name in settings.inputs:
                user_input(spec, Path(settings.inputs[spec.name]), model.name)
    for name, file in settings.inputs.items():
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise InputError(f"{file}: accuracy.inputs: no model has an input {name!r} ({known})")


def prepare(run_dir: Path, models: Sequence[ModelRef], settings: AccuracySettings) -> None:
    """Write every model's inputs, manifest and host reference outputs into the run folder."""
    for model in models:
        manifest = manifest_path(run_dir, model)
        if manifest.is_file():  # a resumed run keeps its inputs and reference
            continue
        folder = manifest.parent
        folder.mkdir(parents=True, exist_ok=True)
        interpreter = _interpreter(model.path)
        specs = _specs(interpreter.get_input_details())
        files = []
        for index, (spec, detail) in enumerate(
            zip(specs, interpreter.get_input_details(), strict=True)
        ):
            user = settings.inputs.get(spec.name)
            data = (
                user_input(spec, Path(user), model.name)
                if user
                else seeded_input(spec, settings.seed, model.sha256, index)
            )
            path = folder / f"{index:02d}-{safe_name(spec.name)[:80]}.bin"
            path.write_bytes(data.tobytes())
            interpreter.set_tensor(detail["index"], data)
            files.append(
                InputFile(
                    spec, path.relative_to(run_dir).as_posix(), sha256_file(path), user or "seeded"
                )
            )
        interpreter.invoke()
        outputs = interpreter.get_output_details()
        reference = (
            run_dir / ACCURACY_DIR / "reference" / f"{model_dir(model.name, model.sha256)}.bin"
        )
        reference.parent.mkdir(parents=True, exist_ok=True)
        reference.write_bytes(
            b"".join(interpreter.get_tensor(o["index"]).tobytes() for o in outputs)
        )
        entry = ModelAccuracy(
            name=model.name,
            sha256=model.sha256,
            inputs=tuple(files),
            outputs=tuple(_specs(outputs)),
            reference=reference.relative_to(run_dir).as_posix(),
            seed=settings.seed,
        )
        manifest.write_text(json.dumps(entry.to_json(), indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------- metrics


def dequantize(spec: TensorSpec, raw: Array) -> Array:
    """The values a tensor stands for, as float64."""
    if spec.quantized:
        return (raw.astype(np.float64) - spec.zero_point) * spec.scale
    return raw.astype(np.float64)


def split_outputs(specs: Sequence[TensorSpec], data: bytes) -> list[Array]:
    """The output tensors in a file `--output_filepath` wrote; ValueError when sizes differ."""
    expected = sum(s.nbytes for s in specs)
    if len(data) != expected:
        raise ValueError(f"the output file has {len(data)} bytes, the outputs take {expected}")
    out, at = [], 0
    for spec in specs:
        chunk = data[at : at + spec.nbytes]
        out.append(np.frombuffer(chunk, dtype=np.dtype(spec.dtype)).reshape(spec.shape))
        at += spec.nbytes
    return out


def compare_tensor(spec: TensorSpec, reference: Array, output: Array) -> TensorAccuracy:
    """Errors of one output tensor against the reference (both as the tensor's dtype)."""
    ref = dequantize(spec, np.asarray(reference)).ravel()
    out = dequantize(spec, np.asarray(output)).ravel()
    ref_ok, out_ok = np.isfinite(ref), np.isfinite(out)
    both = ref_ok & out_ok
    # NaN where the reference has NaN, or the same infinity, is agreement; anything else not.
    same = ~ref_ok & ~out_ok & ((ref == out) | (np.isnan(ref) & np.isnan(out)))
    nonfinite = int(np.count_nonzero(~both & ~same))
    max_abs = mean_abs = rel = cosine = quanta = None
    if both.any():
        r, o = ref[both], out[both]
        diff = np.abs(o - r)
        max_abs = float(diff.max())
        mean_abs = float(diff.mean())
        scale = max(float(np.abs(r).max()), float(np.abs(o).max()))
        rel = max_abs / scale if scale > 0 else 0.0
        if spec.quantized:
            quanta = max_abs / spec.scale
        norms = float(np.linalg.norm(r)) * float(np.linalg.norm(o))
        if norms > 0:
            cosine = float(np.clip(np.dot(r, o) / norms, -1.0, 1.0))
        else:
            cosine = 1.0 if float(np.linalg.norm(r)) == float(np.linalg.norm(o)) else 0.0
    top1, top5 = _top_k(spec, ref, out)
    return TensorAccuracy(
        name=spec.name,
        dtype=spec.dtype,
        shape=spec.shape,
        max_abs=max_abs,
        mean_abs=mean_abs,
        rel=rel,
        quanta=quanta,
        cosine=cosine,
        top1=top1,
        top5=top5,
        nonfinite=nonfinite,
        quantized=spec.quantized,
    )


def _top_k(spec: TensorSpec, ref: Array, out: Array) -> tuple[float | None, float | None]:
    """Top-1 and top-5 agreement for classifier-shaped outputs ([classes] or [rows, classes])."""
    if not 1 <= len(spec.shape) <= 2 or spec.shape[-1] < 2:
        return None, None
    classes = spec.shape[-1]
    r = np.nan_to_num(ref.reshape(-1, classes), nan=-np.inf)
    o = np.nan_to_num(out.reshape(-1, classes), nan=-np.inf)
    top1 = float(np.mean(np.argmax(r, axis=1) == np.argmax(o, axis=1)))
    if classes < 5:
        return top1, None
    ref5 = np.argsort(-r, axis=1, kind="stable")[:, :5]
    out5 = np.argsort(-o, axis=1, kind="stable")[:, :5]
    shared = [len(set(a) & set(b)) / 5 for a, b in zip(ref5.tolist(), out5.tolist(), strict=True)]
    return top1, float(np.mean(shared))


def violations(tensors: Sequence[TensorAccuracy], tolerance: Tolerance) -> list[str]:
    """What is over the tolerance, one text per tensor and limit, with the numbers."""
    found = []
    for t in tensors:
        if t.nonfinite:
            found.append(f"{t.name}: {t.nonfinite} NaN/Inf value(s) where the reference differs")
        checks = [
            ("max rel error", t.rel, tolerance.max_rel, True),
            ("max abs error", t.max_abs, tolerance.max_abs, True),
            ("max error in quanta", t.quanta, tolerance.max_quanta, True),
            ("cosine", t.cosine, tolerance.min_cosine, False),
            ("top-1 agreement", t.top1, tolerance.min_top1, False),
        ]
        for what, value, limit, upper in checks:
            if value is None or limit is None:
                continue
            if (value > limit) if upper else (value < limit):
                found.append(f"{t.name}: {what} {value:.3g} {'>' if upper else '<'} {limit:g}")
    return found


def tolerance_for(spec: DelegateSpec, quantized: bool, settings: AccuracySettings) -> Tolerance:
    """The limits a variant is judged by: the default for its arithmetic, then the config's
    for its kind, for its label, and the variant's own `accuracy_tolerance`."""
    if quantized:
        base = QUANTIZED
    elif spec.kind in ("cpu", "xnnpack"):
        base = EXACT
    elif spec.kind == "gpu":
        base = ACCELERATOR_FP32 if spec.precision_loss_allowed is False else FP16
    elif spec.kind == "nnapi":
        base = FP16 if spec.allow_fp16 else ACCELERATOR_FP32
    elif spec.kind == "hexagon":
        base = ACCELERATOR_FP32
    else:
        base = FP16
    for override in (
        settings.tolerances.get(spec.kind),
        settings.tolerances.get(spec.label),
        spec.accuracy_tolerance,
    ):
        if override is not None:
            base = override.over(base)
    return base


def compare(
    model: ModelAccuracy,
    reference: bytes,
    output: bytes,
    tolerance: Tolerance,
    *,
    against: str,
) -> tuple[AccuracyStatus, str | None, tuple[TensorAccuracy, ...]]:
    """Status, reason and per-tensor metrics of `output` against `reference`."""
    try:
        refs = split_outputs(model.outputs, reference)
        outs = split_outputs(model.outputs, output)
    except ValueError as exc:
        return AccuracyStatus.FAILED, str(exc), ()
    tensors = tuple(
        compare_tensor(spec, r, o) for spec, r, o in zip(model.outputs, refs, outs, strict=True)
    )
    bad = violations(tensors, tolerance)
    if bad:
        return (
            AccuracyStatus.INACCURATE,
            f"inaccurate against {against}: " + "; ".join(bad),
            tensors,
        )
    return AccuracyStatus.OK, None, tensors


# ---------------------------------------------------------------------------- on a device


@dataclass(frozen=True)
class DeviceOutputs:
    """What one accuracy invocation on a device gave: the pulled output file, or why not."""

    status: AccuracyStatus  # OK when `output` holds the outputs
    reason: str | None = None
    output: str | None = None  # relative to the run folder
    log: str | None = None
    command: str | None = None
    simulated: bool = False
    computed: bool = True  # False: a virtual phone made the outputs up without inference


_lock = threading.Lock()
_runs: dict[tuple[str, str, str, str], DeviceOutputs] = {}
_results: dict[tuple[str, str, str, str], Accuracy] = {}
_manifests: dict[Path, ModelAccuracy] = {}


def check(host: CellHost, cell: Cell, result: CellResult) -> CellResult:
    """The cell with its accuracy, when the run asks for it and the cell has a number.

    The check runs once per (device, model, delegate variant); a fallback is compared too,
    and says so. Device faults during it are the check's, never the cell's.
    """
    if not host.config.accuracy.enabled or result.status is not Status.OK:
        return result
    key = (str(host.run_dir), cell.serial, cell.model_sha256, cell.delegate)
    with _lock:
        accuracy = _results.get(key)
    if accuracy is None:
        try:
            accuracy = _variant_accuracy(host, cell)
        except (DeviceError, DeviceLost) as exc:
            accuracy = Accuracy(status=AccuracyStatus.FAILED, reason=f"accuracy run: {exc}")
        except Interrupted:  # the timed result is kept; the run stops after it is recorded
            return replace(
                result,
                accuracy=Accuracy(status=AccuracyStatus.FAILED, reason="accuracy run: stopped"),
            )
        with _lock:
            _results[key] = accuracy
    if result.fallback:
        note = "the delegate fell back: these are the CPU's outputs"
        accuracy = replace(
            accuracy,
            fallback=True,
            reason=f"{accuracy.reason}; {note}" if accuracy.reason else note,
        )
    reason = result.reason
    if accuracy.status is AccuracyStatus.INACCURATE and not reason:
        reason = f"{cell.delegate}: {accuracy.reason}"
    return replace(result, accuracy=accuracy, reason=reason)


def _manifest(host: CellHost, cell: Cell) -> ModelAccuracy:
    path = manifest_path(host.run_dir, cell)
    with _lock:
        if path not in _manifests:
            _manifests[path] = ModelAccuracy.from_json(json.loads(path.read_text("utf-8")))
        return _manifests[path]


def is_reference(spec: DelegateSpec) -> bool:
    """True for the plain CPU variant with no flags of its own: the device's reference."""
    return spec.model_dump(exclude={"label"}) == REFERENCE_SPEC.model_dump(exclude={"label"})


def _variant_accuracy(host: CellHost, cell: Cell) -> Accuracy:
    model = _manifest(host, cell)
    quantized = any(o.quantized for o in model.outputs)
    settings = host.config.accuracy
    tolerance = tolerance_for(cell.spec, quantized, settings)
    inputs = tuple(i.file for i in model.inputs)
    reference = _device_outputs(host, cell, model, REFERENCE_SPEC, REFERENCE_LABEL)
    if is_reference(cell.spec):
        own, against = reference, HOST_LITERT
    else:
        own = _device_outputs(host, cell, model, cell.spec, cell.delegate)
        against = DEVICE_CPU if reference.status is AccuracyStatus.OK else HOST_LITERT
    base = Accuracy(
        status=own.status,
        reference=against,
        reason=own.reason,
        simulated=own.simulated,
        tolerance=tolerance.model_dump(exclude_none=True),
        inputs=inputs,
        output=own.output,
        command=own.command,
        log=own.log,
    )
    if own.status is not AccuracyStatus.OK or own.output is None:
        return base
    if against == HOST_LITERT and not own.computed:
        return replace(
            base,
            status=AccuracyStatus.UNSUPPORTED,
            reason="the virtual phone made its CPU outputs up without inference: nothing to "
            "compare with LiteRT on the host",
        )
    ref_file = reference.output if against == DEVICE_CPU else model.reference
    assert ref_file is not None
    status, reason, tensors = compare(
        model,
        (host.run_dir / ref_file).read_bytes(),
        (host.run_dir / own.output).read_bytes(),
        tolerance,
        against="the device's CPU" if against == DEVICE_CPU else "LiteRT on the host",
    )
    if against == HOST_LITERT and not is_reference(cell.spec):
        note = f"the device's CPU reference gave no outputs ({reference.reason})"
        reason = f"{reason}; {note}" if reason else note
    return replace(base, status=status, reason=reason, tensors=tensors, reference_output=ref_file)


def unsupported_reason(parsed: Sequence[BenchmarkResult]) -> str | None:
    """Why the binary cannot do accuracy runs: the flags it printed as unconsumed (None: it
    knows them all)."""
    unknown = sorted(
        {
            m.group(1)
            for r in parsed
            for w in r.warnings
            if w.startswith("Unconsumed cmdline flags")
            for m in _UNKNOWN_FLAGS.finditer(w)
        }
    )
    if not unknown:
        return None
    flags = ", ".join(f"--{name}" for name in unknown)
    return (
        f"this benchmark_model does not know {flags} (--input_layer_value_files came with "
        "TF 2.3, --output_filepath with TF 2.10)"
    )


def untimed(config: Config) -> Config:
    """The config of an accuracy invocation: one inference, no warm-up, no memory polling."""
    return config.model_copy(
        update={
            "warmup_runs": 0,
            "warmup_min_secs": 0.0,
            "num_runs": 1,
            "min_secs": 0.0,
            "report_peak_memory": False,
            "op_profiling": False,
        }
    )


def _device_outputs(
    host: CellHost, cell: Cell, model: ModelAccuracy, spec: DelegateSpec, label: str
) -> DeviceOutputs:
    """Run the model once with the fixed inputs under `spec` and pull its outputs (once per
    device, model and label in a run)."""
    key = (str(host.run_dir), cell.serial, cell.model_sha256, label)
    with _lock:
        done = _runs.get(key)
    if done is not None:
        return done
    done = _run_on_device(host, cell, model, spec, label)
    with _lock:
        _runs[key] = done
    return done


def _run_on_device(
    host: CellHost, cell: Cell, model: ModelAccuracy, spec: DelegateSpec, label: str
) -> DeviceOutputs:
    opt = host.options
    host.status(f"accuracy: {cell.model} {label}")
    remote_model = model_path(host, cell)
    fed = []
    for item in model.inputs:
        remote = paths.input_path(item.sha256)
        local = host.run_dir / item.file
        deployed = host.retry(
            "input push",
            lambda r=remote, f=local: ensure_file(host.device, f, r),  # type: ignore[misc]
        )
        host.add_pushed(deployed.pushed_bytes)
        fed.append((item.spec.name, item.spec.shape, remote))
    stem = f"{model_dir(cell.model, cell.model_sha256)}-{safe_name(label)[:60]}"
    prefix = f"{safe_name(host.run_id)}-{stem}"
    remote_out = paths.log_path(f"{prefix}.outputs.bin")
    remote_log = paths.log_path(f"{prefix}.accuracy.log")
    folder = host.run_dir / ACCURACY_DIR / "outputs" / safe_name(cell.serial)
    local_out, local_log = folder / f"{stem}.bin", folder / f"{stem}.log"
    args = benchmark_args(
        spec,
        threads=cell.threads,
        graph=remote_model,
        config=untimed(host.config),
        extra=accuracy_args(fed, remote_out),
    )
    command = join_command([host.binary.remote_path, *args])
    host.retry(
        "accuracy output reset",
        lambda: host.device.shell(
            join_command(["rm", "-f", remote_out]), timeout=opt.command_timeout_s, check=True
        ),
    )
    job = launch_job(host, command, remote_log, "accuracy launch")
    if job is None:
        return DeviceOutputs(
            AccuracyStatus.FAILED, "accuracy run: launch printed no pid", command=command
        )
    timed_out, exit_status = wait_job(host, job, time.monotonic())
    forget_job(host, job)
    have_log = pull_log(host, remote_log, local_log)
    rel_log = local_log.relative_to(host.run_dir).as_posix() if have_log else None
    result = DeviceOutputs(AccuracyStatus.FAILED, command=command, log=rel_log)
    if have_log:
        text = local_log.read_text("utf-8", "replace")
        result = replace(
            result,
            simulated=is_simulated(local_log),
            computed=not _NO_INFERENCE.search(text),
        )
    parsed = parse_file(local_log, exit_status=exit_status) if have_log else []
    unsupported = unsupported_reason(parsed)
    if unsupported:
        return replace(result, status=AccuracyStatus.UNSUPPORTED, reason=unsupported)
    if timed_out:
        return replace(
            result, reason=f"accuracy run still going after {opt.run_deadline_s:g} s; killed"
        )
    if exit_status != 0 or not parsed or parsed[-1].status != "ok":
        why = parsed[-1].reason if parsed and parsed[-1].reason else f"exit status {exit_status}"
        return replace(result, reason=f"accuracy run failed: {why}")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        host.retry(
            "pull outputs",
            lambda: host.device.pull(remote_out, str(local_out), timeout=opt.transfer_timeout_s),
        )
    except RemoteFileMissing:
        return replace(result, reason="the tool wrote no output file")
    return replace(
        result, status=AccuracyStatus.OK, output=local_out.relative_to(host.run_dir).as_posix()
    )
