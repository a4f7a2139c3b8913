from pathlib import Path

import pytest

from farm.errors import ConfigError
from farm.profiles import PROFILE_DIR, all_profiles, get_profile, load_profile, match_profile


def test_every_shipped_profile_loads():
    profiles = all_profiles(PROFILE_DIR)
    assert "pixel_7" in profiles
    for profile in profiles.values():
        assert profile.model, profile.name
        assert profile.abis, profile.name
        assert profile.cpu.clusters, profile.name


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
    bad.write_text("name: x\nprops: {}\ncpu: {clusters: []}\nsurprise: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_profile(bad)
