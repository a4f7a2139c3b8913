"""Thermal snapshots parsed from device output, the hot/throttled verdicts, the taskset mask,
the preparation script, the config keys, the lab's heat model and the report columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.android import prepare
from farm.android.thermal import parse
from farm.config import Config, load_config
from farm.errors import ConfigError
from farm.profiles import get_profile
from farm.report.frame import cells_frame, summary_frame
from farm.results.model import CellResult, DeviceSummary, Metrics, Status
from farm.results.provenance import Battery, Cluster, Snapshot, Thermal, Zone
from farm.sim import heat

THERMALSERVICE = """IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 2
Thermal Status: 1
Cached temperatures:
\tTemperature{mValue=38.1, mType=0, mName=AP, mStatus=0}
HAL Ready: true
Current temperatures from HAL:
\tTemperature{mValue=44.8, mType=0, mName=AP, mStatus=0}
\tTemperature{mValue=32.2, mType=2, mName=BAT, mStatus=0}
Current cooling devices from HAL:
\tCoolingDevice{mValue=0, mType=2, mName=cpu0}
"""

BATTERY_TEXT = """Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  status: 5
  level: 100
  temperature: 274
"""


def output(zones: str, cpufreq: str, battery: str = BATTERY_TEXT, ts: str = THERMALSERVICE) -> str:
    return f"@zones\n{zones}@cpufreq\n{cpufreq}@battery\n{battery}@thermalservice\n{ts}"


def test_snapshot_from_sysfs_battery_and_thermalservice():
    text = output(
        "cpu-0-0-usr|41300\nbattery|28\nskin|\n",
        "0 1 2 3|300000|1803000|1803000\n4 5|2348000|2348000|1900000\n",
    )
    reading = parse(text)
    snap = reading.snapshot
    assert reading.unreadable == ()
    assert snap.zones_source == "sysfs"
    assert [(z.name, z.temp_c) for z in snap.zones] == [
        ("cpu-0-0-usr", 41.3),
        ("battery", 28.0),  # degrees, as some kernels print them
        ("skin", None),  # listed, not readable
    ]
    assert snap.hottest == Zone("cpu-0-0-usr", 41.3)
    assert snap.thermal_status == 1
    assert snap.battery == Battery(level=100, temp_c=27.4, status="full", plugged="usb")
    assert snap.battery.charging is True
    assert snap.clusters[1] == Cluster("4 5", 2348000, 2348000, 1900000)
    assert snap.capped and not snap.clusters[0].capped


def test_unreadable_sysfs_falls_back_to_the_thermal_hal_and_says_what_is_missing():
    reading = parse(output("tsens|\n", "", battery="Can't find service: battery\n", ts=""))
    assert reading.snapshot.zones_source is None and reading.snapshot.hottest_c is None
    assert len(reading.unreadable) == 4  # temperatures, thermal status, frequencies, battery
    hal = parse(output("tsens|\n", "0-3|1|2|2\n")).snapshot
    assert hal.zones_source == "thermalservice"
    assert [z.name for z in hal.zones] == ["AP", "BAT"] and hal.hottest_c == 44.8


def snap(temp: float | None, status: int | None = 0, cap: int = 2_000_000) -> Snapshot:
    zones = (Zone("big", temp),) if temp is not None else ()
    return Snapshot("t", zones, "sysfs", status, Battery(), (Cluster("4-7", 1, 2_000_000, cap),))


@pytest.mark.parametrize(
    ("thermal", "hot", "throttled"),
    [
        (Thermal(snap(39.0), snap(45.0), limit_c=40), False, False),
        (Thermal(snap(41.0), snap(45.0), limit_c=40), True, False),
        (Thermal(snap(39.0), snap(45.0, status=1), limit_c=40), False, True),  # status rose
        (Thermal(snap(39.0, status=2), snap(45.0, status=2), limit_c=40), False, False),
        (Thermal(snap(39.0), snap(45.0, cap=1_500_000), limit_c=40), False, True),  # capped
        (Thermal(snap(39.0), snap(39.0), limit_c=40, capped=True), False, True),  # a sample
        (Thermal(snap(39.0), snap(39.0), limit_c=40, max_status=3), False, True),
        (Thermal(None, None, limit_c=40), False, False),  # nothing readable: no verdict
    ],
)
def test_hot_and_throttled_verdicts(thermal: Thermal, hot: bool, throttled: bool):
    assert (thermal.hot, thermal.throttled) == (hot, throttled)
    assert Thermal.from_json(thermal.to_json()) == thermal


def test_cell_lines_keep_thermal_and_older_lines_read_without_it():
    thermal = Thermal(snap(41.0), snap(55.0, status=2), limit_c=40, waited_s=3.5, gate="timeout")
    cell = CellResult(
        key="k", serial="s", server="h:1", device=DeviceSummary(), model="m", model_sha256="x",
        delegate="cpu", delegate_kind="cpu", threads=1, repeat=0, status=Status.OK,
        thermal=thermal, hot=True,
        throttled=True, metrics=Metrics(inference_avg_us=1000, inference_std_us=5,
        inference_count=50),
    )  # fmt: skip
    again = CellResult.from_json(cell.to_json())
    assert again == cell
    old = cell.to_json()
    for key in ("thermal", "hot", "throttled"):
        del old[key]
    assert CellResult.from_json(old, version=2).thermal is None
    frame = cells_frame([cell])
    assert frame.loc[0, "temp_before_c"] == 41.0 and frame.loc[0, "cooldown_s"] == 3.5
    summary = summary_frame(frame)
    assert bool(summary.loc[0, "hot"]) and "throttled" in summary.loc[0, "flags"]


def test_big_mask_comes_from_the_cpufreq_maxima():
    pixel = [Cluster("0 1 2 3", 1, 1803000), Cluster("4 5", 1, 2348000), Cluster("6 7", 1, 2850000)]
    assert prepare.big_mask(pixel) == "f0"
    assert prepare.big_mask([Cluster("0-3", 1, 2000000)]) == "f"  # all alike: all of them
    assert prepare.big_mask([Cluster("0-3", 1, None)]) is None
    assert prepare.affinity_mask("all", pixel) is None
    assert prepare.affinity_mask("0xC0", pixel) == "c0"


def test_the_preparation_script_saves_before_it_changes():
    script = prepare.prepare_script(stay_awake=True, governor="performance", mask="f0")
    assert len(script) < 4096
    saved = script.index("mv /data/local/tmp/farm/restore.sh.new")
    assert saved < script.index("settings put global stay_on_while_plugged_in 7")
    assert saved < script.index("echo performance >")
    assert script.startswith("if [ -f /data/local/tmp/farm/restore.sh ]")  # a killed run's


def test_config_keys_and_clear_errors(tmp_path: Path):
    config = Config(cooldown={"max_temp_c": 38}, cpu_affinity="big", seed=3)
    assert config.hot_limit_c == 38 and config.cooldown is not None
    assert config.cooldown.timeout_s == 300 and Config().hot_limit_c == 40
    path = tmp_path / "farm.yaml"
    path.write_text("models: []\ncpu_affinity: bigg\n")
    with pytest.raises(ConfigError, match=r"farm.yaml:2: cpu_affinity: .*'bigg'"):
        load_config(path)
    path.write_text("order: random\n")
    with pytest.raises(ConfigError, match=r"farm.yaml:1: order: "):
        load_config(path)
    assert load_config(None, overrides={"seed": "12"}).seed == 12
    with pytest.raises(ConfigError, match="--seed"):
        load_config(None, overrides={"seed": "x"})


def test_the_lab_heat_model_throttles_big_cores_only():
    profile = get_profile("pixel_7")
    cool = heat.idle(profile)
    assert heat.throttle(profile, cool) == (1.0, 0)
    hot = heat.started_at(profile, 62.0)
    assert max(hot) == 62.0
    factor, status = heat.throttle(profile, hot)
    assert factor == pytest.approx(1 - 0.03 * 10) and status == 3
    caps = {c.core: heat.max_freq_khz(profile, c, factor) for c in profile.sim.cpu.clusters}
    assert caps["Cortex-A55"] == 1803000 and caps["Cortex-X1"] < 2850000
    assert heat.cpu_slowdown(profile, hot, None) > heat.cpu_slowdown(profile, cool, None) == 1.0
    assert heat.cpu_slowdown(profile, cool, {0, 1}) == pytest.approx(2850000 / 1803000)
    assert heat.cooled(profile, hot, 10_000) == cool
    emulator = get_profile("emulator_x86_64")
    assert heat.throttle(emulator, heat.started_at(emulator, 90)) == (1.0, 0)
    assert "Thermal Status: 3" in heat.thermalservice(profile, hot)
    assert parse(output("", "", ts=heat.thermalservice(profile, hot))).snapshot.thermal_status == 3
