"""Run labels: `labels:` in farm.yaml, `--label NAME=VALUE`, the header's `labels`."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.config import load_config
from farm.errors import ConfigError
from farm.results.model import PlanRecord, RunHeader


def test_labels_from_the_file_and_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text("labels:\n  commit: abc123\n  build: 4711\n  nightly: true\n")
    config = load_config(path, overrides={"label": ["commit=def456", "branch=main"]})
    assert config.labels == {
        "commit": "def456",
        "build": "4711",
        "nightly": "true",
        "branch": "main",
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [(["commit"], "expected NAME=VALUE"), (["=x"], "label name ''"), (["a b=1"], "label name")],
)
def test_bad_label_flags_are_one_line(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides={"label": items})


def test_a_bad_label_name_in_the_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text("threads: [1]\nlabels:\n  'my label': x\n")
    with pytest.raises(ConfigError, match=r"farm.yaml:\d+: labels"):
        load_config(path)


def test_header_labels_round_trip_and_default_to_empty() -> None:
    header = RunHeader(run_id="r", plan=PlanRecord(), labels={"commit": "abc"})
    data = header.to_json()
    assert data["labels"] == {"commit": "abc"}
    assert RunHeader.from_json(data).labels == {"commit": "abc"}
    del data["labels"]  # a header written before labels existed
    assert RunHeader.from_json(data).labels == {}
