from pathlib import Path

import pytest

from farm.errors import ConfigError
from farm.profiles import (
    PROFILE_DIR,
    Profile,
    SimSettings,
    all_profiles,
    get_profile,
    load_profile,
    match_profile,
)


def test_every_shipped_profile_loads():
    profiles = all_profiles(PROFILE_DIR)
    assert "pixel_7" in profiles
    for profile in profiles.values():
        assert profile.model, profile.name
        assert profile.abis, profile.name
        assert profile.sim.cpu.clusters, profile.name


def test_match_uses_getprop_globs():
    pixel = get_profile("pixel_7")
    assert pixel.matches({"ro.product.model": "Pixel 7", "ro.board.platform": "gs201"})
    assert not pixel.matches({"ro.product.model": "Pixel 7 Pro", "ro.board.platform": "gs201"})
    assert match_profile(dict(pixel.props)) is not None


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="pixel_7"):
        get_profile("no_such_phone")


def test_bad_profile_names_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprops: {}\nsim: {cpu: {clusters: []}}\nsurprise: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*surprise"):
        load_profile(bad)
    bad.write_text("name: x\nprops: {}\nsim: {cpu: {clusters: []}, speed: 2.0}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*speed"):  # unknown keys under sim: too
        load_profile(bad)


def test_profile_holds_identity_and_the_lab_settings_sit_under_sim():
    assert set(Profile.model_fields) == {"name", "description", "emulator", "match", "props", "sim"}
    assert {
        "cpu",
        "thermal",
        "battery",
        "storage_free_mb",
        "delegates",
        "features",
        "mem_total_kb",
        "gles",
    } == set(SimSettings.model_fields)
    for name in ("pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64"):
        text = (PROFILE_DIR / f"{name}.yaml").read_text()
        top = {line.split(":")[0] for line in text.splitlines() if line[:1].isalpha()}
        assert top == {"name", "description", "match", "props", "sim"} | (
            {"emulator"} if name.startswith("emulator") else set()
        ), name


def test_an_old_style_profile_is_told_what_to_move(tmp_path: Path):
    """A profile written before `sim:` existed: one line naming the file and the keys."""
    source = (PROFILE_DIR / "pixel_7.yaml").read_text()
    head, _, sim = source.partition("\nsim:\n")
    old = head + "\n" + "".join(line[2:] + "\n" for line in sim.splitlines())
    path = tmp_path / "pixel_7.yaml"
    path.write_text(old)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"{path}: `cpu`, `thermal`, `battery`, `storage_free_mb`, `delegates`, "
        "`mem_total_kb`, `gles` belong under `sim:` (the virtual lab's settings; move them "
        "into a `sim:` section)"
    )
    path.write_text(head + "\ncpu: {clusters: []}\n")
    with pytest.raises(ConfigError, match=r"pixel_7.yaml: `cpu` belongs under `sim:`"):
        all_profiles(tmp_path)  # what `farm lab up --profile-dir` reads


def test_default_and_explicit_folder_share_one_cache():
    default, explicit = all_profiles(), all_profiles(PROFILE_DIR)
    assert default.keys() == explicit.keys()
    assert all(default[name] is explicit[name] for name in default)
    assert get_profile("pixel_7") is get_profile("pixel_7", PROFILE_DIR)


def test_a_changed_profile_file_is_read_again(tmp_path: Path):
    source = (PROFILE_DIR / "pixel_7.yaml").read_text()
    path = tmp_path / "mine.yaml"
    path.write_text(source.replace("name: pixel_7", "name: my_phone", 1))
    assert all_profiles(tmp_path)["my_phone"].model == "Pixel 7"
    path.write_text(
        source.replace("name: pixel_7", "name: my_phone", 1).replace(
            "ro.product.model: Pixel 7\n", "ro.product.model: Pixel 7 Lab\n", 1
        )
        + "\n"  # a different size, whatever the clock's resolution
    )
    assert get_profile("my_phone", tmp_path).model == "Pixel 7 Lab"
    assert "my_phone" not in all_profiles()


def test_missing_profile_folder_is_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such folder"):
        all_profiles(tmp_path / "absent")


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ("{when: has_op, kind: crash}", "needs op"),
        ("{when: model_glob, kind: crash}", "needs model_glob"),
        ("{when: sometimes}", "when"),
    ],
)
def test_failure_triggers_are_checked(tmp_path: Path, failure: str, expected: str):
    source = (PROFILE_DIR / "galaxy_a54.yaml").read_text()
    start = source.index("        - when: has_op")
    end = source.index("    nnapi:")
    path = tmp_path / "bad.yaml"
    path.write_text(source[:start] + f"        - {failure}\n" + source[end:])
    with pytest.raises(ConfigError, match=expected):
        load_profile(path)


def test_has_op_failure_matches_by_content():
    from farm.models import inspect_model
    from farm.sim.delegates_sim import matching_failure

    models = PROFILE_DIR.parent / "models"
    gpu = get_profile("galaxy_a54").sim.delegates.gpu
    assert gpu is not None
    tiny = inspect_model(models / "tiny_cnn_cumsum_float.tflite")
    mobile = inspect_model(models / "mobilenet_v1_0.25_128_float.tflite")
    crash = matching_failure(gpu, tiny)
    assert crash is not None and crash.kind == "crash" and crash.signal == 11
    assert matching_failure(gpu, mobile) is None
