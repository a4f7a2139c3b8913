"""`make demo`'s numbers: every "vs CPU" of a delegate goes the way the phone's profile says."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.cli.demo import default_models_dir, run_demo, timing_note
from farm.profiles import PROFILE_DIR, get_profile
from farm.report.frame import cells_frame, summary_frame

pytestmark = [pytest.mark.lab, pytest.mark.needs("bubblewrap")]


def profile_speedup(profile_name: str, delegate: str) -> float:
    """The speed-up over the phone's CPU the profile gives the delegate a demo cell uses."""
    delegates = get_profile(profile_name, PROFILE_DIR).sim.delegates
    if delegate == "gpu":
        assert delegates.gpu is not None
        return delegates.gpu.speedup
    assert delegates.nnapi is not None
    return delegates.nnapi.accelerators[0].speedup  # no accelerator named: the runtime's first


def test_demo_vs_cpu_agrees_with_the_profiles_for_fully_delegated_cells(tmp_path: Path) -> None:
    said: list[str] = []
    result = run_demo(
        engine="litert",
        out=tmp_path,
        model_dir=default_models_dir(),
        progress=False,
        say=said.append,
        threads=(1,),  # "vs CPU" is against one thread; the sweep adds nothing here
    )
    summary = summary_frame(cells_frame(result.cells))
    full = {
        (c.serial, c.model, c.delegate, c.threads)
        for c in result.cells
        if c.status == "ok" and c.delegation is not None and c.delegation.coverage == "full"
    }
    checked = []
    for row in summary.itertuples():
        if row.delegate not in ("gpu", "nnapi") or (
            (row.serial, row.model, row.delegate, row.threads) not in full
        ):
            continue
        intended = profile_speedup(row.profile, row.delegate)
        what = f"{row.profile} {row.model} {row.delegate} t{row.threads}: vs CPU {row.speedup:.2f}"
        assert (row.speedup > 1) == (intended > 1), f"{what}, profile {intended}"
        # Its size too, give or take the hand-over to the delegate and the host's noise.
        assert intended / 3 <= row.speedup <= intended * 1.5, f"{what}, profile {intended}"
        checked.append((row.profile, row.delegate))
    # Every phone with a delegate that took a whole model was checked, faster and slower ones.
    assert {p for p, _ in checked} == {"pixel_7", "galaxy_s23", "galaxy_a54", "emulator_x86_64"}
    assert {d for _, d in checked} == {"gpu", "nnapi"}
    assert "CPU times are real LiteRT inferences" in timing_note("litert")
