"""The plan: run order with interleaved repeats, cell keys, unsupported cells with reasons."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from farm.android.info import DeviceInfo
from farm.bench.plan import Cell, ModelRef, is_qualcomm, make_plan, unsupported_reason
from farm.config import Config, DelegateSpec
from farm.errors import InputError

SHA_A = "a" * 64
SHA_B = "b" * 64


def device(serial: str = "s1", **kw: object) -> DeviceInfo:
    base: dict[str, object] = dict(
        server="127.0.0.1:5037", state="device", model="Phone", soc="", sdk=34,
        abis=("arm64-v8a",),
    )  # fmt: skip
    base.update(kw)
    return DeviceInfo(serial=serial, **base)  # type: ignore[arg-type]


def models() -> list[ModelRef]:
    return [ModelRef(Path("/m/a.tflite"), "a", SHA_A), ModelRef(Path("/m/b.tflite"), "b", SHA_B)]


def spec(value: object) -> DelegateSpec:
    return DelegateSpec.model_validate(value)


def test_cross_product_in_interleaved_order():
    config = Config(delegates=["cpu", "xnnpack"], threads=[1, 4], repeats=3, order="fixed")
    plan = make_plan([device("s1"), device("s2")], models(), config)
    assert len(plan.cells) == 2 * 2 * 2 * 2 * 3
    assert plan.total == len(plan.cells) and not plan.unsupported
    # Every cell of repeat 0 comes before any cell of repeat 1, and so on.
    repeats = [c.repeat for c in plan.cells]
    assert repeats == sorted(repeats)
    for serial in ("s1", "s2"):
        own = plan.cells_for(serial)
        assert len(own) == 24
        per_repeat = [[(c.model, c.delegate, c.threads) for c in own if c.repeat == r]
                      for r in range(3)]  # fmt: skip
        assert per_repeat[0] == per_repeat[1] == per_repeat[2]
        assert per_repeat[0][:4] == [("a", "cpu", 1), ("a", "cpu", 4), ("a", "xnnpack", 1),
                                     ("a", "xnnpack", 4)]  # fmt: skip
    assert len({c.key for c in plan.cells}) == len(plan.cells)


def test_shuffled_rounds_follow_the_seed():
    def order(seed: int) -> list[str]:
        config = Config(delegates=["cpu", "xnnpack"], threads=[1, 2, 4], repeats=3, seed=seed)
        return [c.key for c in make_plan([device("s1"), device("s2")], models(), config).cells]

    fixed = Config(delegates=["cpu", "xnnpack"], threads=[1, 2, 4], repeats=3, order="fixed")
    plain = [c.key for c in make_plan([device("s1"), device("s2")], models(), fixed).cells]
    assert order(7) == order(7)  # the same seed, the same order
    assert order(7) != order(8) and order(7) != plain
    assert sorted(order(7)) == sorted(plain)  # the same cells
    cells = make_plan([device("s1")], models(), Config(threads=[1, 2], repeats=4, seed=7)).cells
    repeats = [c.repeat for c in cells]
    assert repeats == sorted(repeats)  # rounds stay in order; only a round's cells move
    rounds = [[(c.model, c.threads) for c in cells if c.repeat == r] for r in range(4)]
    assert len({tuple(r) for r in rounds}) > 1  # each round draws its own order


def test_cell_key_is_stable():
    cell = Cell(serial="emulator-5554", server="127.0.0.1:5037", model="a",
                model_path=Path("/m/a.tflite"), model_sha256=SHA_A, delegate="external:qnn",
                spec=spec({"kind": "external", "name": "qnn", "path": "/x.so"}), threads=4,
                repeat=2)  # fmt: skip
    assert cell.key == f"emulator-5554|{'a' * 16}|external:qnn|t4|r2"
    assert cell.planned().key == cell.key
    # The key does not depend on where the model lives or on the delegate's options object.
    moved = Cell(serial="emulator-5554", server="127.0.0.1:5038", model="a",
                 model_path=Path("/elsewhere/a.tflite"), model_sha256=SHA_A,
                 delegate="external:qnn", spec=spec({"kind": "external", "name": "qnn",
                 "path": "/y.so"}), threads=4, repeat=2)  # fmt: skip
    assert moved.key == cell.key


def test_the_plan_does_not_consult_profiles(monkeypatch: pytest.MonkeyPatch):
    """What a device can run comes from the device and the tool, never from device_profiles/:
    the emulator's GPU and NNAPI cells (its profile's sim: has no GPU, only nnapi-reference)
    are planned, and the tool's output says what happened."""
    import farm.profiles

    def no_profiles(*args: object, **kw: object) -> None:
        raise AssertionError("the plan read a device profile")

    for name in ("get_profile", "all_profiles", "match_profile", "load_profile"):
        monkeypatch.setattr(farm.profiles, name, no_profiles)
    emu = device(
        "emulator-5554", abis=("x86_64", "arm64-v8a"), emulator=True, soc="AOSP ranchu",
        profile="emulator_x86_64",
    )  # fmt: skip
    named = {"kind": "nnapi", "accelerator_name": "google-edgetpu"}
    config = Config(delegates=["cpu", "gpu", named, "hexagon"], threads=[1, 2], order="fixed")
    plan = make_plan([emu], models()[:1], config)
    # Delegates that ignore threads run once, with the first count.
    assert [(c.delegate, c.threads) for c in plan.cells] == [
        ("cpu", 1), ("cpu", 2), ("gpu", 1), ("nnapi:google-edgetpu", 1)
    ]  # fmt: skip
    reasons = {(c.delegate, c.threads): r for c, r in plan.unsupported}
    assert reasons == {("hexagon", 1): "Hexagon needs a Qualcomm SoC; this is an emulator"}
    # A profile name the device matched, known or not, changes nothing.
    for profile in ("pixel_7", "no_such_profile", None):
        phone = device(soc="Google GS201", profile=profile)
        assert unsupported_reason(phone, spec(named)) is None
        assert unsupported_reason(phone, spec("gpu")) is None
        assert unsupported_reason(phone, spec("hexagon")) == (
            "Hexagon needs a Qualcomm SoC; device has Google GS201"
        )


def test_hexagon_needs_qualcomm():
    pixel = device(model="Pixel 7", soc="Google GS201", props={"ro.board.platform": "gs201"})
    assert unsupported_reason(pixel, spec("hexagon")) == (
        "Hexagon needs a Qualcomm SoC; device has Google GS201"
    )
    exynos = device(soc="Samsung s5e8835")
    assert unsupported_reason(exynos, spec("hexagon")) == (
        "Hexagon needs a Qualcomm SoC; device has Samsung s5e8835"
    )
    snapdragon = device(soc="QTI SM8550", props={"ro.board.platform": "kalama"})
    assert unsupported_reason(snapdragon, spec("hexagon")) is None
    assert unsupported_reason(device(soc=""), spec("hexagon")) is None  # unknown: let it try
    assert "emulator" in unsupported_reason(device(emulator=True), spec("hexagon"))  # type: ignore[operator]
    x86 = device(soc="Qualcomm SM8550", abis=("x86_64",))
    assert "ARM only" in unsupported_reason(x86, spec("hexagon"))  # type: ignore[operator]


def test_is_qualcomm():
    assert is_qualcomm(device(soc="Qualcomm Technologies, Inc SM8550"))
    assert is_qualcomm(device(soc="", props={"ro.board.platform": "taro"}))
    assert is_qualcomm(device(soc="SDM845"))
    assert not is_qualcomm(device(soc="Samsung s5e8835", props={"ro.board.platform": "s5e8835"}))
    assert not is_qualcomm(device(soc="Google GS201", props={"ro.board.platform": "gs201"}))
    assert not is_qualcomm(device(soc="MediaTek MT6989"))


def test_nnapi_limits():
    old = device(sdk=26)
    assert "SDK 27" in unsupported_reason(old, spec("nnapi"))  # type: ignore[operator]
    named = spec({"kind": "nnapi", "accelerator_name": "google-edgetpu"})
    assert "SDK 29" in unsupported_reason(device(sdk=28), named)  # type: ignore[operator]
    assert unsupported_reason(device(sdk=29), named) is None
    assert unsupported_reason(device(sdk=27), spec("nnapi")) is None
    # Whether the device has an accelerator of that name is the tool's to say at run time.
    other = spec({"kind": "nnapi", "accelerator_name": "qti-dsp"})
    assert unsupported_reason(device(profile="pixel_7"), other) is None
    # An unknown SDK level: nothing is known, so the tool decides.
    assert unsupported_reason(device(sdk=None), named) is None


def test_gpu_and_cpu_on_a_full_profile_are_supported():
    config = Config(delegates=["cpu", "xnnpack", "gpu", "nnapi"], threads=[1], order="fixed")
    plan = make_plan([device(profile="pixel_7")], models()[:1], config)
    assert [c.delegate for c in plan.cells] == ["cpu", "xnnpack", "gpu", "nnapi"]


def test_offline_device_cells_are_kept_as_unavailable():
    config = Config(delegates=["cpu"], threads=[1, 2])
    plan = make_plan([device("s1"), device("s2", state="offline")], models()[:1], config)
    assert [c.serial for c in plan.cells] == ["s1", "s1"]
    assert [(c.serial, r) for c, r in plan.unavailable] == [("s2", "device is offline")] * 2
    assert len(plan.all_cells()) == plan.total == 4


def test_same_file_once_and_same_names_told_apart():
    refs = [ModelRef(Path("/x/m.tflite"), "m", SHA_A), ModelRef(Path("/y/m.tflite"), "m", SHA_A),
            ModelRef(Path("/z/m.tflite"), "m", SHA_B)]  # fmt: skip
    plan = make_plan([device()], refs, Config())
    assert [c.model for c in plan.cells] == [f"m@{'a' * 8}", f"m@{'b' * 8}"]


def test_model_ref_hashes_the_file(tmp_path: Path):
    path = tmp_path / "net.tflite"
    path.write_bytes(b"TFL3" + bytes(100))
    ref = ModelRef.from_path(path)
    assert ref.name == "net"
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(InputError, match="missing.tflite: cannot read"):
        ModelRef.from_path(tmp_path / "missing.tflite")


def test_serial_on_two_servers_is_refused():
    a = device("emulator-5554", server="127.0.0.1:5037")
    b = device("emulator-5554", server="127.0.0.1:6037")
    with pytest.raises(InputError, match="emulator-5554 is seen by several adb servers"):
        make_plan([a, b], models(), Config())


def test_plan_record_is_json():
    config = Config(delegates=["cpu", {"kind": "gpu", "backend": "gl"}, "hexagon"])
    plan = make_plan([device(soc="Google GS201", profile="pixel_7")], models(), config)
    data = json.loads(json.dumps(plan.record().to_json(), allow_nan=False))
    assert data["delegates"][1] == {"kind": "gpu", "backend": "gl", "label": "gpu-gl"}
    assert len(data["cells"]) == 4 and len(data["unsupported"]) == 2
    assert data["unsupported"][0]["reason"].startswith("Hexagon needs a Qualcomm SoC")
    assert data["models"][0] == {"name": "a", "path": "/m/a.tflite", "sha256": SHA_A}


def test_variants_of_one_kind_threads_and_every_accelerator():
    config = Config(
        delegates=[
            "cpu",
            {"kind": "cpu", "xnnpack": False},
            {"kind": "gpu", "label": "gpu-fp16", "precision_loss_allowed": True},
            {"kind": "gpu", "precision_loss_allowed": False, "threads": [2]},
            {"kind": "nnapi", "accelerator_name": "*"},
        ],
        threads=[1, 4],
        order="fixed",
    )
    known = ("google-edgetpu", "nnapi-reference")
    plan = make_plan([device("s1"), device("s2")], models()[:1], config,
                     accelerators={"s1": known, "s2": None})  # fmt: skip
    rows = [(c.delegate, c.threads) for c in plan.cells_for("s1")]
    assert rows == [
        ("cpu", 1), ("cpu", 4), ("cpu-no-xnnpack", 1), ("cpu-no-xnnpack", 4), ("gpu-fp16", 1),
        ("gpu-fp32", 2), ("nnapi:google-edgetpu", 1), ("nnapi:nnapi-reference", 1),
    ]  # fmt: skip
    edgetpu = next(c for c in plan.cells if c.delegate == "nnapi:google-edgetpu")
    assert edgetpu.spec.accelerator_name == "google-edgetpu"
    # s2 did not say which accelerators it has: the variant is kept, unsupported, with why.
    assert [(c.serial, c.delegate, r) for c, r in plan.unsupported] == [
        ("s2", "nnapi:*", "the device's NNAPI accelerators are unknown (the tool did not "
         "list them)")
    ]  # fmt: skip
    assert len({c.key for c in plan.all_cells()}) == plan.total


def test_two_variants_with_one_label_are_refused():
    from farm.config import apply_overrides
    from farm.errors import ConfigError

    with pytest.raises(ValueError, match="listed twice .give each variant its own label"):
        Config(delegates=[{"kind": "gpu", "label": "g"}, {"kind": "gpu", "label": "g"}])
    config = Config(delegates=["cpu", {"kind": "gpu", "label": "a"}, {"kind": "gpu", "label": "b"}])
    # --delegate gpu picks every gpu variant of the file
    picked = apply_overrides(config, {"delegate": "gpu"})
    assert [d.label for d in picked.delegates] == ["a", "b"]
    with pytest.raises(ConfigError, match="--delegate"):
        apply_overrides(config, {"delegate": "gpux"})
