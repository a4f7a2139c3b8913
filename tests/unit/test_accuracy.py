"""Accuracy metrics on hand-made tensors, tolerances, inputs, flags and the result schema."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from farm.bench.accuracy import (
    ACCELERATOR_FP32,
    EXACT,
    FP16,
    QUANTIZED,
    TensorSpec,
    compare,
    compare_tensor,
    is_reference,
    seeded_input,
    split_outputs,
    tolerance_for,
    unsupported_reason,
    user_input,
    violations,
)
from farm.bench.flags import accuracy_args
from farm.bench.parse import parse_text
from farm.config import AccuracySettings, Config, DelegateSpec, Tolerance, apply_overrides
from farm.errors import ConfigError, InputError
from farm.results.model import (
    SCHEMA_VERSION,
    Accuracy,
    AccuracyStatus,
    CellResult,
    DeviceSummary,
    Status,
    TensorAccuracy,
)
from farm.sim.outputs import value_files

FLOAT = TensorSpec("out", "float32", (1, 4))


def f32(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float32)


def test_identical_float_outputs_agree_exactly() -> None:
    t = compare_tensor(FLOAT, f32(0.1, 0.7, 0.1, 0.1), f32(0.1, 0.7, 0.1, 0.1))
    assert (t.max_abs, t.mean_abs, t.rel, t.nonfinite) == (0.0, 0.0, 0.0, 0)
    assert t.cosine == pytest.approx(1.0) and t.top1 == 1.0 and t.top5 is None
    assert not violations([t], EXACT)


def test_float_errors_relative_error_and_cosine() -> None:
    t = compare_tensor(FLOAT, f32(1, 2, 3, 4), f32(1, 2, 3, 4.5))
    assert t.max_abs == pytest.approx(0.5) and t.mean_abs == pytest.approx(0.125)
    assert t.rel == pytest.approx(0.5 / 4.5)  # against the larger of the two maxima
    expected = (1 + 4 + 9 + 18) / math.sqrt(30) / math.sqrt(1 + 4 + 9 + 20.25)
    assert t.cosine == pytest.approx(expected)
    assert t.top1 == 1.0  # the 4th class wins in both
    found = violations([t], FP16)
    assert found == [f"out: max rel error {0.5 / 4.5:.3g} > 0.05"]


def test_top1_and_top5_agreement_per_row() -> None:
    spec = TensorSpec("scores", "float32", (2, 6))
    ref = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]], dtype=np.float32)
    out = np.array([[0, 1, 2, 3, 6, 5], [5, 4, 3, 2, 1, 0]], dtype=np.float32)
    t = compare_tensor(spec, ref, out)
    assert t.top1 == 0.5  # row 0's winner moved from class 5 to class 4
    assert t.top5 == 1.0  # the same five classes lead each row
    out[1] = [0, 1, 2, 3, 4, 5]
    assert compare_tensor(spec, ref, out).top5 == pytest.approx((1 + 4 / 5) / 2)


def test_quantized_outputs_are_compared_dequantized_and_in_quanta() -> None:
    spec = TensorSpec("q", "uint8", (1, 3), scale=0.5, zero_point=10)
    assert spec.quantized and spec.nbytes == 3
    ref = np.array([[10, 12, 14]], dtype=np.uint8)  # 0.0, 1.0, 2.0
    near = compare_tensor(spec, ref, np.array([[10, 13, 14]], dtype=np.uint8))
    assert near.quantized and near.max_abs == pytest.approx(0.5) and near.quanta == 1.0
    assert not violations([near], QUANTIZED)
    far = compare_tensor(spec, ref, np.array([[200, 12, 14]], dtype=np.uint8))
    assert far.quanta == 190.0 and far.max_abs == pytest.approx(95.0)
    assert violations([far], QUANTIZED) == ["q: max error in quanta 190 > 3"]


def test_int8_quantized_with_a_negative_zero_point() -> None:
    spec = TensorSpec("q", "int8", (4,), scale=1 / 256, zero_point=-128)
    ref = np.array([-128, -128, 127, -128], dtype=np.int8)
    t = compare_tensor(spec, ref, np.array([-127, -128, 127, -128], dtype=np.int8))
    assert t.max_abs == pytest.approx(1 / 256) and t.quanta == pytest.approx(1.0)
    assert t.top1 == 1.0


def test_nan_and_inf_where_the_reference_has_them_agree() -> None:
    spec = TensorSpec("x", "float32", (4,))
    ref = np.array([1.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    t = compare_tensor(spec, ref, ref.copy())
    assert t.nonfinite == 0 and t.max_abs == 0.0
    assert not violations([t], EXACT)


def test_nan_and_inf_that_the_reference_lacks_are_counted_and_flagged() -> None:
    spec = TensorSpec("x", "float32", (4,))
    ref = np.array([1.0, 2.0, np.inf, 4.0], dtype=np.float32)
    out = np.array([1.0, np.nan, -np.inf, 4.0], dtype=np.float32)
    t = compare_tensor(spec, ref, out)
    assert t.nonfinite == 2  # NaN for 2.0, and -inf for +inf
    assert t.max_abs == 0.0  # the finite positions agree
    assert violations([t], EXACT) == ["x: 2 NaN/Inf value(s) where the reference differs"]


def test_all_nonfinite_and_all_zero_outputs() -> None:
    spec = TensorSpec("x", "float32", (2,))
    nothing = compare_tensor(spec, np.array([1, 2], np.float32), np.full(2, np.nan, np.float32))
    assert nothing.nonfinite == 2 and nothing.max_abs is None and nothing.cosine is None
    zeros = np.zeros(2, np.float32)
    assert compare_tensor(spec, zeros, zeros).cosine == 1.0
    one_zero = compare_tensor(spec, zeros, np.array([0, 1], np.float32))
    assert one_zero.cosine == 0.0 and one_zero.rel == 1.0


def test_split_outputs_and_a_file_of_the_wrong_size() -> None:
    specs = [TensorSpec("a", "float32", (2,)), TensorSpec("b", "int8", (3,))]
    data = np.array([1.5, -2], np.float32).tobytes() + np.array([1, 2, 3], np.int8).tobytes()
    a, b = split_outputs(specs, data)
    assert a.tolist() == [1.5, -2.0] and b.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="has 10 bytes, the outputs take 11"):
        split_outputs(specs, data[:-1])


def test_compare_whole_files_flags_garbage_with_the_numbers() -> None:
    from farm.bench.accuracy import ModelAccuracy

    model = ModelAccuracy("m", "0" * 64, (), (FLOAT,), "ref.bin", 0)
    ref = f32(0.1, 0.2, 0.6, 0.1).tobytes()
    status, reason, tensors = compare(model, ref, f32(0.6, -0.3, 0.0, 0.9).tobytes(), FP16,
                                      against="the device's CPU")  # fmt: skip
    assert status is AccuracyStatus.INACCURATE and tensors[0].top1 == 0.0
    assert reason and reason.startswith("inaccurate against the device's CPU: out: max rel error")
    assert "cosine" in reason
    assert compare(model, ref, ref[:-4], FP16, against="x")[0] is AccuracyStatus.FAILED


def test_default_tolerances_by_arithmetic_and_overrides() -> None:
    settings = AccuracySettings()
    assert tolerance_for(DelegateSpec(kind="cpu"), False, settings) == EXACT
    assert tolerance_for(DelegateSpec(kind="xnnpack"), False, settings) == EXACT
    assert tolerance_for(DelegateSpec(kind="gpu"), False, settings) == FP16
    fp32 = DelegateSpec(kind="gpu", precision_loss_allowed=False)
    assert tolerance_for(fp32, False, settings) == ACCELERATOR_FP32
    assert tolerance_for(DelegateSpec(kind="nnapi", allow_fp16=True), False, settings) == FP16
    assert tolerance_for(DelegateSpec(kind="gpu"), True, settings) == QUANTIZED
    settings = AccuracySettings.model_validate(
        {"tolerances": {"gpu": {"max_rel": 0.2}, "gpu-fp32": {"min_cosine": 0.9}}}
    )
    spec = DelegateSpec(kind="gpu", label="gpu-fp32", precision_loss_allowed=False,
                        accuracy_tolerance={"max_abs": 1.0})  # fmt: skip
    assert tolerance_for(spec, False, settings) == Tolerance(
        max_rel=0.2, min_cosine=0.9, max_abs=1.0
    )
    assert is_reference(DelegateSpec(kind="cpu")) and not is_reference(spec)
    assert not is_reference(DelegateSpec(kind="cpu", benchmark_flags={"use_caching": "true"}))


def test_seeded_inputs_are_deterministic_and_fit_the_signature(tmp_path: Path) -> None:
    sha = "ab" * 32
    image = TensorSpec("image", "float32", (1, 4, 4, 3))
    a, b = seeded_input(image, 0, sha, 0), seeded_input(image, 0, sha, 0)
    assert a.dtype == np.float32 and a.shape == (1, 4, 4, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, seeded_input(image, 1, sha, 0))
    assert a.min() >= -1 and a.max() <= 1
    q = seeded_input(TensorSpec("q", "int8", (1000,), scale=0.1, zero_point=0), 0, sha, 1)
    assert q.dtype == np.int8 and q.min() < -100 and q.max() > 100  # the whole range
    ids = seeded_input(TensorSpec("ids", "int32", (1000,)), 0, sha, 2)
    assert ids.min() >= 0 and ids.max() <= 99


def test_user_inputs_are_checked_against_the_model(tmp_path: Path) -> None:
    spec = TensorSpec("image", "float32", (1, 2))
    good = tmp_path / "good.npy"
    np.save(good, np.array([[1.0, 2.0]]))  # float64 is cast to the model's float32
    assert user_input(spec, good, "m").dtype == np.float32
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 2), np.float32))
    with pytest.raises(InputError, match=r"wrong.npy: shape \(2, 2\) does not match input"):
        user_input(spec, wrong, "m")
    text = tmp_path / "text.npy"
    text.write_text("not numpy")
    with pytest.raises(InputError, match="text.npy: not a readable .npy array"):
        user_input(spec, text, "m")


def test_accuracy_flags_and_the_stand_ins_reading_of_them() -> None:
    args = accuracy_args(
        [("serving_default_image:0", (1, 128, 128, 3), "/d/a.bin"), ("mask", (1, 8), "/d/b.bin")],
        "/d/out.bin",
    )
    assert args == [
        "--input_layer=serving_default_image:0,mask",
        "--input_layer_shape=1,128,128,3:1,8",
        "--input_layer_value_files=serving_default_image::0:/d/a.bin,mask:/d/b.bin",
        "--output_filepath=/d/out.bin",
    ]
    spec = args[2].split("=", 1)[1]
    assert value_files(spec) == {"serving_default_image:0": "/d/a.bin", "mask": "/d/b.bin"}
    with pytest.raises(ValueError, match="cannot be passed"):
        accuracy_args([("a,b", (1,), "/x")], "/o")


def test_a_binary_without_the_flags_is_unsupported_not_an_error() -> None:
    old = parse_text(
        "STARTING!\n"
        "WARN: Unconsumed cmdline flags: --input_layer=x --input_layer_shape=1,2 "
        "--input_layer_value_files=x:/a --output_filepath=/o\n"
        "Graph: [/m.tflite]\n"
        "Inference timings in us: Init: 100, First inference: 10, Warmup (avg): 10, "
        "Inference (avg): 9\n"
    )
    reason = unsupported_reason(old)
    assert reason and reason.startswith(
        "this benchmark_model does not know --input_layer, --input_layer_shape, "
        "--input_layer_value_files, --output_filepath"
    )
    assert unsupported_reason(parse_text("STARTING!\nGraph: [/m.tflite]\n")) is None


def test_config_accuracy_forms_and_the_command_line_switch() -> None:
    assert Config().accuracy.enabled is False
    assert Config.model_validate({"accuracy": True}).accuracy.enabled is True
    settings = Config.model_validate({"accuracy": {"seed": 7, "inputs": {"x": "x.npy"}}}).accuracy
    assert settings.enabled and settings.seed == 7 and settings.inputs == {"x": "x.npy"}
    assert apply_overrides(Config(), {"accuracy": True}).accuracy.enabled
    with pytest.raises(ConfigError, match="output_filepath"):
        apply_overrides(Config(), {"flag": ["output_filepath=/x"]})


def test_the_accuracy_field_round_trips_and_marks_the_cell() -> None:
    tensor = TensorAccuracy("out", "float32", (1, 4), 0.9, 0.3, 1.1, None, 0.01, 0.0, 0.2, 0)
    accuracy = Accuracy(
        AccuracyStatus.INACCURATE, "device-cpu", "inaccurate against the device's CPU: …",
        tolerance={"max_rel": 0.05}, tensors=(tensor,), inputs=("accuracy/inputs/m/00-x.bin",),
        output="accuracy/outputs/s/m-gpu.bin", reference_output="accuracy/outputs/s/m-cpu.bin",
    )  # fmt: skip
    cell = CellResult("k", "s", "srv", DeviceSummary(), "m", "sha", "gpu", 1, 0, Status.OK,
                      delegate_kind="gpu", accuracy=accuracy)  # fmt: skip
    assert cell.marks == ("inaccurate",) and not cell.comparable
    back = CellResult.from_json(cell.to_json(), SCHEMA_VERSION)
    assert back == cell and back.accuracy and back.accuracy.cosine == 0.01
    assert CellResult.from_json(cell.to_json() | {"accuracy": None}, 3).accuracy is None


def test_reports_show_the_check_and_never_call_an_inaccurate_cell_best() -> None:
    from farm.report.frame import (
        accuracy_frame,
        best_per_device,
        cells_frame,
        problems_frame,
        summary_frame,
    )
    from farm.report.markdown import render_markdown
    from farm.results.model import Metrics

    def cell(delegate: str, latency_us: float, accuracy: Accuracy) -> CellResult:
        return CellResult(
            f"s|m|{delegate}", "s", "srv", DeviceSummary(model="Pixel 7"), "m", "sha", delegate,
            1, 0, Status.OK, reason=accuracy.reason, delegate_kind=delegate,
            metrics=Metrics(inference_avg_us=latency_us, inference_std_us=1, inference_count=50),
            accuracy=accuracy,
        )  # fmt: skip

    good = TensorAccuracy("out", max_abs=2e-4, rel=1e-3, cosine=0.99999, top1=1.0)
    bad = TensorAccuracy("out", max_abs=0.9, rel=1.2, cosine=0.02, top1=0.0)
    cells = [
        cell("cpu", 9000, Accuracy(AccuracyStatus.OK, "host-litert", tensors=(good,))),
        cell("gpu", 3000, Accuracy(AccuracyStatus.OK, "device-cpu", tensors=(good,))),
        cell("nnapi", 1000, Accuracy(AccuracyStatus.INACCURATE, "device-cpu",
                                     "inaccurate against the device's CPU: out: cosine 0.02 < "
                                     "0.995", tensors=(bad,))),
    ]  # fmt: skip
    df = cells_frame(cells)
    assert list(df.columns[-6:]) == [
        "accuracy", "accuracy_reference", "max_abs_error", "max_rel_error", "cosine",
        "top1_agreement",
    ]  # fmt: skip
    row = df[df["delegate"] == "nnapi"].iloc[0]
    assert (row["accuracy"], row["marks"], row["cosine"]) == ("inaccurate", "inaccurate", 0.02)
    best = best_per_device(summary_frame(df))
    assert best["delegate"].tolist() == ["gpu"]  # the fastest, nnapi, is wrong
    problems = problems_frame(df)
    assert problems[["delegate", "status"]].values.tolist() == [["nnapi", "inaccurate"]]
    assert "cosine 0.02 < 0.995" in problems["reason"].iloc[0]
    assert accuracy_frame(df)["delegate"].tolist() == ["cpu", "gpu", "nnapi"]
    md = render_markdown(cells)
    section = md.split("## Accuracy", 1)[1].split("##", 1)[0]
    assert "| nnapi | device-cpu | 0.9 | 1.2 | 0.02 | 0 | inaccurate |" in section
    assert "| cpu | host-litert |" in section
    import io

    from farm.report.console import print_report, report_console

    buffer = io.StringIO()
    print_report(cells, console=report_console(buffer))
    table = buffer.getvalue().split("Accuracy (outputs on fixed inputs", 1)[1]
    assert "device-cpu" in table and "0.02" in table and "inaccurate" in table
