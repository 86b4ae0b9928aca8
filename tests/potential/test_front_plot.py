"""The accuracy-time front as DVC plot files: every point of the eval_sr dict once, with its own numbers.

Independent truths:
- A hand-built eval_sr dict whose points, splits and front are written out below: each split's CSV must hold
  exactly the points listed for it (learned summaries by their ``seconds_per_sample``, baselines by their
  ``seconds``), in the order of their seconds worked out by hand, with ``on_front`` as the dict's ``front`` says.
- The committed run: the plot files in ``plots/eval_sr/`` must be what the committed ``metrics/eval_sr.json``
  gives, byte for byte, so the published figures are that run's numbers.
- ``dvc plots show`` on a copy of ``dvc.yaml`` must find both fronts and read back the CSV rows.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fieldlab.errors import InputError
from fieldlab.potential.evaluation import zero_shot
from fieldlab.potential.evaluation.front_plot import write_front_plots

REPO = Path(__file__).resolve().parents[2]
FILES = ("front_base.csv", "front_x2.csv", "front.png")


def summary(rel_l2: float, seconds: float) -> dict:
    return {"rel_l2": rel_l2, "rel_l2_max": 2 * rel_l2, "seconds_per_sample": seconds, "seconds_spread": 0.05}


def baseline(rel_l2: float, seconds: float) -> dict:
    return {"rel_l2": rel_l2, "rel_l2_max": 2 * rel_l2, "rel_l2_spread": 0.0, "seconds": seconds, "seconds_spread": 0.1}


def eval_dict() -> dict:
    """An eval_sr dict with every learned summary, baselines on one, two or three splits (ood is no chart), and
    keys that are not points (ratios, the ood summary, the default predictor)."""
    return {
        "backbone": "fno",
        "checkpoint_epoch": 3,
        "base": summary(0.02, 0.30),
        "base_refined": summary(0.006, 0.52),
        "x2": summary(0.03, 1.5),
        "x2_restricted": summary(0.031, 0.48),
        "x2_restricted_refined": summary(0.013, 1.01),
        "x2_subgrid": summary(0.0055, 0.87),
        "ood": summary(0.04, 0.31),
        "ratio_x2_base": 1.5,
        "baselines": {
            "fem_4mm": {"base": baseline(0.031, 0.05), "x2": baseline(0.039, 0.10), "ood": baseline(0.05, 0.06)},
            "cg_gmg_k2": {"base": baseline(0.0026, 0.21), "x2": baseline(0.0037, 1.67)},
            "fem_2mm": {"x2": baseline(0.0088, 0.43)},
            "cg_sa_energy_k3": {"base": baseline(0.0052, 0.83)},
        },
        "front": {"base": ["fem_4mm", "cg_gmg_k2"], "x2": ["fem_4mm", "fem_2mm", "x2_subgrid", "cg_gmg_k2"]},
        "default": {"base": {"name": "fno_coarse_fem_sgs32", "rel_l2": 0.006, "from": "base_refined"}},
    }


#: Per split, (name, kind, rel_l2, seconds, on_front) in order of seconds, read off :func:`eval_dict` by hand.
EXPECTED = {
    "base": [
        ("fem_4mm", "classical", 0.031, 0.05, True),
        ("cg_gmg_k2", "classical", 0.0026, 0.21, True),
        ("base", "learned", 0.02, 0.30, False),
        ("base_refined", "learned", 0.006, 0.52, False),
        ("cg_sa_energy_k3", "classical", 0.0052, 0.83, False),
    ],
    "x2": [
        ("fem_4mm", "classical", 0.039, 0.10, True),
        ("fem_2mm", "classical", 0.0088, 0.43, True),
        ("x2_restricted", "learned", 0.031, 0.48, False),
        ("x2_subgrid", "learned", 0.0055, 0.87, True),
        ("x2_restricted_refined", "learned", 0.013, 1.01, False),
        ("x2", "learned", 0.03, 1.5, False),
        ("cg_gmg_k2", "classical", 0.0037, 1.67, True),
    ],
}


def read_rows(path: Path) -> list[tuple]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["name", "kind", "rel_l2", "seconds", "on_front"]
        return [
            (
                r["name"],
                r["kind"],
                float(r["rel_l2"]),
                float(r["seconds"]),
                {"true": True, "false": False}[r["on_front"]],
            )
            for r in reader
        ]


@pytest.mark.parametrize("split", sorted(EXPECTED))
def test_each_split_holds_every_point_once_with_its_numbers(tmp_path: Path, split: str) -> None:
    written = write_front_plots(eval_dict(), tmp_path)
    assert sorted(p.name for p in written) == sorted(FILES)
    assert read_rows(tmp_path / f"front_{split}.csv") == EXPECTED[split]


def test_the_figure_is_a_png(tmp_path: Path) -> None:
    write_front_plots(eval_dict(), tmp_path)
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_committed_plot_files_are_the_committed_runs_numbers(tmp_path: Path) -> None:
    """plots/eval_sr/front_*.csv in the repository are what metrics/eval_sr.json gives, byte for byte."""
    result = json.loads((REPO / "metrics" / "eval_sr.json").read_text())
    write_front_plots(result, tmp_path)
    for name in ("front_base.csv", "front_x2.csv"):
        assert (tmp_path / name).read_bytes() == (REPO / "plots" / "eval_sr" / name).read_bytes(), name
    assert (REPO / "plots" / "eval_sr" / "front.png").is_file()
    for split, members in result["front"].items():  # every member of the run's front is marked, and nothing else
        rows = read_rows(tmp_path / f"front_{split}.csv")
        assert {r[0] for r in rows if r[4]} == set(members)


def _drop(path: tuple[str, ...]):
    def edit(out: dict) -> None:
        node = out
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


BROKEN = {
    # what is taken away, the words the error must hold
    "learned seconds": (_drop(("x2_subgrid", "seconds_per_sample")), ["x2_subgrid", "seconds_per_sample"]),
    "learned error": (_drop(("base_refined", "rel_l2")), ["base_refined", "rel_l2"]),
    "baseline seconds": (_drop(("baselines", "fem_2mm", "x2", "seconds")), ["baselines.fem_2mm.x2", "seconds"]),
    "baseline error": (_drop(("baselines", "cg_gmg_k2", "base", "rel_l2")), ["baselines.cg_gmg_k2.base", "rel_l2"]),
    "a split's front": (_drop(("front", "x2")), ["front.x2"]),
    "a front member's point": (_drop(("baselines", "fem_2mm")), ["front.x2", "fem_2mm"]),
}


@pytest.mark.parametrize(("edit", "words"), BROKEN.values(), ids=list(BROKEN))
def test_a_missing_number_is_an_error_naming_the_point(tmp_path: Path, edit, words: list[str]) -> None:
    out = eval_dict()
    edit(out)
    with pytest.raises(InputError) as info:
        write_front_plots(out, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert list(tmp_path.iterdir()) == [], "nothing is written when a point is missing"


def test_run_eval_writes_the_front_beside_the_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval_sr's output folder gets the front files with the evaluation's own numbers; a front it cannot write
    fails the evaluation and leaves the previous outputs as they were."""
    result = {**eval_dict(), "samples": {"base": {}}}
    monkeypatch.setattr(zero_shot, "evaluate_sr", lambda *args, **kwargs: json.loads(json.dumps(result)))
    figures, metrics = tmp_path / "plots" / "eval_sr", tmp_path / "metrics" / "eval_sr.json"
    zero_shot.run_eval(None, "best.pt", metrics, figures)  # type: ignore[arg-type]
    assert sorted(p.name for p in figures.iterdir()) == sorted([*FILES, "per_sample.json"])
    assert read_rows(figures / "front_x2.csv") == EXPECTED["x2"]
    before = {p.name: p.read_bytes() for p in figures.iterdir()}, metrics.read_bytes()

    del result["x2_subgrid"]["seconds_per_sample"]
    with pytest.raises(InputError, match="x2_subgrid"):
        zero_shot.run_eval(None, "best.pt", metrics, figures)  # type: ignore[arg-type]
    assert ({p.name: p.read_bytes() for p in figures.iterdir()}, metrics.read_bytes()) == before


def test_dvc_plots_show_renders_both_fronts(tmp_path: Path) -> None:
    """``dvc plots show --json`` on the repository's dvc.yaml and the committed front files: both CSVs as scatter
    plots on log-log axes holding every row, the figure as an image (about 2 s)."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "plots" / "eval_sr").mkdir(parents=True)
    for name in FILES:
        shutil.copy(REPO / "plots" / "eval_sr" / name, tmp_path / "plots" / "eval_sr" / name)
    env = {**os.environ, "HOME": str(tmp_path), "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site")}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True, timeout=60)
    shutil.copytree(REPO / ".dvc" / "plots", tmp_path / ".dvc" / "plots")  # the project's log-log scatter
    proc = subprocess.run(
        [*dvc, "plots", "show", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    for split in ("base", "x2"):
        (plot,) = data[f"plots/eval_sr/front_{split}.csv"]
        assert plot["type"] == "vega"
        values = plot["content"]["data"]["values"]
        rows = read_rows(tmp_path / "plots" / "eval_sr" / f"front_{split}.csv")
        assert [(v["name"], float(v["rel_l2"]), float(v["seconds"])) for v in values] == [
            (r[0], r[2], r[3]) for r in rows
        ]
        encoding = plot["content"]["encoding"]
        assert (encoding["x"]["field"], encoding["y"]["field"]) == ("seconds", "rel_l2")
        assert encoding["x"]["scale"] == encoding["y"]["scale"] == {"type": "log"}
    (image,) = data["plots/eval_sr/front.png"]
    assert image["type"] == "image"
