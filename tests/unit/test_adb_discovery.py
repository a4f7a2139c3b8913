"""Discovery's pure part: DeviceInfo from a device-list entry and getprop values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from farm.android.adb import DeviceEntry, parse_getprop
from farm.android.discovery import abi_list, is_emulator, make_info, soc_name
from farm.profiles import get_profile
from farm.results.model import DeviceSummary

SERVER = "127.0.0.1:5037"


def test_profile_props_make_a_matched_info() -> None:
    profile = get_profile("pixel_7")
    info = make_info(DeviceEntry("28031FDH2001AB", "device", {}), SERVER, dict(profile.props))
    assert info.profile == "pixel_7"
    assert (info.manufacturer, info.model, info.soc) == ("Google", "Pixel 7", "Google GS201")
    assert (info.sdk, info.release, info.abis, info.emulator) == (34, "14", ("arm64-v8a",), False)
    assert DeviceSummary.of(info).to_json() == {
        "model": "Pixel 7",
        "soc": "Google GS201",
        "sdk": 34,
        "abi": "arm64-v8a",
        "profile": "pixel_7",
    }
    assert "props" not in info.to_dict() and info.to_dict()["server"] == SERVER


def test_unknown_phone_from_corpus_getprop(adb_output: Callable[[str], str]) -> None:
    props = parse_getprop(adb_output("002_getprop_excerpt_moto_g75_5g_sm6475.txt"))
    info = make_info(DeviceEntry("ZY22", "device", {"model": "moto_g75_5G"}), SERVER, props)
    assert info.profile is None
    assert (info.manufacturer, info.model, info.soc) == ("motorola", "moto g75 5G", "QTI SM6475")
    assert info.sdk == 34  # only ro.product.build.version.sdk in this excerpt
    assert info.abis == ("arm64-v8a", "armeabi-v7a", "armeabi")


def test_states_without_props_keep_the_list_facts() -> None:
    info = make_info(DeviceEntry("emulator-5554", "offline", {"transport_id": "3"}), SERVER, None)
    assert (info.state, info.online, info.abis, info.sdk, info.profile) == (
        "offline",
        False,
        (),
        None,
        None,
    )
    locked = make_info(DeviceEntry("R5CT", "unauthorized", {"model": "SM_S911B"}), SERVER, {})
    assert (locked.state, locked.model) == ("unauthorized", "SM_S911B")


@pytest.mark.parametrize(
    ("props", "soc"),
    [
        ({"ro.soc.manufacturer": "QTI", "ro.soc.model": "SM8550"}, "QTI SM8550"),
        ({"ro.soc.model": "MT6877"}, "MT6877"),
        ({"ro.board.platform": "exynos1380", "ro.hardware": "s5e8835"}, "exynos1380"),
        ({"ro.hardware": "ranchu"}, "ranchu"),
        ({}, ""),
    ],
)
def test_soc_name(props: dict[str, str], soc: str) -> None:
    assert soc_name(props) == soc


def test_abi_list_and_emulator() -> None:
    assert abi_list({"ro.product.cpu.abilist": "x86_64,x86,arm64-v8a"}) == (
        "x86_64",
        "x86",
        "arm64-v8a",
    )
    assert abi_list({"ro.product.cpu.abi": "armeabi-v7a", "ro.product.cpu.abi2": "armeabi"}) == (
        "armeabi-v7a",
        "armeabi",
    )
    assert abi_list({}) == ()
    assert is_emulator({"ro.kernel.qemu": "1"}) and is_emulator({"ro.hardware": "ranchu"})
    assert not is_emulator({"ro.kernel.qemu": "", "ro.hardware": "panther"})
