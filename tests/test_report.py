"""``fieldlab report`` and the README: the published result tables are the committed metrics, digit for digit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fieldlab.commands.report import BEGIN, END, render

REPO = Path(__file__).resolve().parents[1]


def readme_block() -> str:
    text = (REPO / "README.md").read_text()
    assert BEGIN in text and END in text, f"README.md: the results block ({BEGIN} ... {END}) is missing"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def test_readme_results_are_the_committed_metrics():
    """The README's block is `fieldlab report` on metrics/ (regenerate it with `make results`)."""
    assert readme_block() == render(REPO / "metrics")


def test_readme_numbers_appear_in_the_metrics_files():
    """Independent of the renderer: the headline rel L2 values of eval_sr.json are printed in the README block."""
    ev = json.loads((REPO / "metrics" / "eval_sr.json").read_text())
    block = readme_block()
    for key in ("base", "x2", "base_refined", "x2_restricted_refined"):
        assert format(ev[key]["rel_l2"], ".4g") in block


def test_report_renders_what_the_files_say(tmp_path):
    (tmp_path / "eval_sr.json").write_text(
        json.dumps(
            {
                "backbone": "fno",
                "base": {"rel_l2": 0.0123456, "prior_rel_l2": 0.5, "seconds_per_sample": 0.25},
                "x2": {"rel_l2": 0.02, "seconds_per_sample": 1.5},
                "ratio_x2_base": 1.62,
                "baselines": {
                    "fem_4mm": {
                        "base": {"rel_l2": 0.052, "seconds": 0.2},
                        "x2": {"rel_l2": 0.059},
                        "ood": {"rel_l2": 0.05},
                    }
                },
                "ood": {"rel_l2": 0.03, "rel_l2_max": 0.05, "n": 2, "shifts": {"elliptic": {"rel_l2": 0.01, "n": 1}}},
                "ratio_ood_base": 2.43,
                "estimate_base_ood": {"spearman": 0.9},
                "refine_sweeps": 32,
                "base_refined": {"rel_l2": 0.0078, "seconds_per_sample": 0.74},
                "x2_restricted_refined": {"rel_l2": 0.0184, "seconds_per_sample": 1.2},
            }
        )
    )
    (tmp_path / "train_fno.json").write_text(json.dumps({"params": 4199169, "best_val_rel_l2": 0.011}))
    text = render(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| fno"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:7] == ["fno", "4,199,169", "0.011", "0.01235", "0.02", "–", "1.620"]
    assert "| fem_4mm | 0.052 | 0.200 | 0.059 | – | 0.05 |" in text
    assert "ood / base 2.43; error estimate over test + ood: Spearman 0.900" in text
    assert "| all | 2 | 0.03 | 0.05 |" in text and "| elliptic | 1 | 0.01 | – |" in text
    assert "| fno + 32 SGS | 0.0078 | 0.740 | 0.0184 | 1.200 | – |" in text  # the hybrid, no ood_refined
    assert "unet" not in text  # no file, no row


def test_report_without_metrics_is_one_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fieldlab", "report", "--metrics", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and str(tmp_path) in proc.stderr
