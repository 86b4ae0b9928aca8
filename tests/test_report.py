"""``fieldlab report``, the README and docs/results.md: the published result tables are the committed metrics, digit
for digit; and the README stays a page a newcomer reads in five minutes, its links and those of docs/ intact."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fieldlab.commands.report import BEGIN, END, render, render_headline

REPO = Path(__file__).resolve().parents[1]
README, RESULTS = REPO / "README.md", REPO / "docs" / "results.md"
#: The README's limits: its length, and how far down `make repro` and `make test` must appear.
README_MAX_LINES, COMMANDS_WITHIN = 300, 30


def block(path: Path) -> str:
    text = path.read_text()
    assert BEGIN in text and END in text, f"{path.name}: the results block ({BEGIN} ... {END}) is missing"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def test_readme_headline_is_the_committed_metrics():
    """The README's block is the headline of `fieldlab report` on metrics/ (regenerate it with `make results`)."""
    assert block(README) == render_headline(REPO / "metrics")


def test_docs_results_are_the_committed_metrics():
    """docs/results.md's block is every table of `fieldlab report` on metrics/ (`make results` rewrites it too)."""
    assert block(RESULTS) == render(REPO / "metrics")


def test_results_numbers_appear_in_the_metrics_files():
    """Independent of the renderer: the headline rel L2 values of eval_sr.json are printed in docs/results.md."""
    ev = json.loads((REPO / "metrics" / "eval_sr.json").read_text())
    text = block(RESULTS)
    for key in ("base", "x2", "base_refined", "x2_restricted_refined", "x2_subgrid"):
        assert format(ev[key]["rel_l2"], ".4g") in text, key


def test_readme_headline_numbers_appear_in_the_metrics_files():
    """Independent of the renderer: the default predictor's errors are in the README block, and every classical
    rival named there is a member of that grid's front with its own error printed on its row."""
    ev = json.loads((REPO / "metrics" / "eval_sr.json").read_text())
    text = block(README)
    for d in ev["default"].values():
        assert format(d["rel_l2"], ".4g") in text and d["name"] in text
    grids = {"base": "base", "2x": "x2"}
    rivals = re.findall(r"^\| (base|2x) \| `([^`]+)` \| ([^|]+) \|", text, re.M)
    assert {g for g, _, _ in rivals} == {"base", "2x"}  # at least one rival at each grid
    for grid, name, cell in rivals:
        assert name in ev["front"][grids[grid]], (grid, name)
        assert cell.strip() == format(ev["baselines"][name][grids[grid]]["rel_l2"], ".4g")


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    head = "\n".join(lines[:COMMANDS_WITHIN])
    assert "make repro" in head and "make test" in head


#: A Markdown link or image: ``[text](target)`` or ``![alt](target)``, the target up to a space or ``)``.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(path: Path) -> list[tuple[str, str]]:
    """``(file, anchor)`` of each link of ``path`` inside the repository (no scheme; ``file`` empty for an anchor of
    the page itself), code blocks and inline code left out."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return [(t.split("#", 1)[0], t.split("#", 1)[1] if "#" in t else "") for t in targets]


def relative_links(path: Path) -> list[str]:
    """The files ``path`` links to (its anchors dropped, links within the page left out)."""
    return [f for f, _ in links(path) if f]


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``path``: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces as ``-``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = Path(d, "a.md").write_text("# Results\\n## The hybrid: operator, then `sweeps` (SGS)\\n")
    ...     sorted(anchors(Path(d, "a.md")))
    ['results', 'the-hybrid-operator-then-sweeps-sgs']
    """
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", path.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def pipeline_outputs() -> list[Path]:
    """The paths dvc.yaml declares as stage outputs (``outs``, ``metrics``, ``plots``): `make repro` writes them."""
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                paths += list(entry) if isinstance(entry, dict) else [entry]
    return [REPO / p for p in paths]


@pytest.mark.parametrize(
    "page",
    [README, *sorted((REPO / "docs").glob("*.md"))],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_every_relative_link_points_at_a_file(page):
    """Each link of the README and of docs/*.md names a file that exists, or one inside a declared output of the
    pipeline (a figure `make repro` writes, such as the front's picture); an anchor names a heading of its page."""
    outputs = pipeline_outputs()
    missing = []
    for target, anchor in links(page):
        path = (page.parent / target).resolve() if target else page
        if not path.exists() and not any(path.is_relative_to(o.resolve()) for o in outputs):
            missing.append(target)
        elif anchor and path.suffix == ".md" and path.is_file() and anchor not in anchors(path):
            missing.append(f"{target}#{anchor}")
    assert not missing, f"{page.relative_to(REPO)}: links to nothing: {missing}"


def test_link_check_reports_a_broken_link(tmp_path):
    """The check is not vacuous: a page linking to a missing file yields that link."""
    page = tmp_path / "p.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text(
        "[ok](there.md#a) and [broken](docs/nowhere.md#part), [web](https://dvc.org/doc) [up](#top)\n"
        "![img](fig/missing.png) `[code](in_code.md)`\n```\n[block](in_block.md)\n```\n"
    )
    assert relative_links(page) == ["there.md", "docs/nowhere.md", "fig/missing.png"]
    assert [t for t in relative_links(page) if not (tmp_path / t).exists()] == ["docs/nowhere.md", "fig/missing.png"]


def test_headline_renders_the_default_and_its_classical_rivals(tmp_path):
    """A hand-built run: at base the fastest classical front point as accurate as the default, and the most
    accurate one at most as slow; points off the front, or slower and less accurate, are not rivals."""
    (tmp_path / "eval_sr.json").write_text(
        json.dumps(
            {
                "default": {
                    "base": {"name": "fno_sgs32", "rel_l2": 0.006, "seconds_per_sample": 0.5, "from": "base_refined"}
                },
                "front": {"base": ["fem_4mm", "cg_k2", "cg_k4", "base_refined"]},
                "baselines": {
                    "fem_4mm": {"base": {"rel_l2": 0.03, "seconds": 0.05}},
                    "cg_k2": {"base": {"rel_l2": 0.003, "seconds": 0.6}},
                    "cg_k4": {"base": {"rel_l2": 5e-05, "seconds": 0.8}},
                    "cg_k1": {"base": {"rel_l2": 0.001, "seconds": 0.4}},  # better than cg_k2, but off the front
                    "fem_8mm": {"base": {"rel_l2": 0.2, "seconds": 0.9}},
                },
            }
        )
    )
    rows = [line for line in render_headline(tmp_path).splitlines() if line.startswith("| base")]
    assert rows == [
        "| base | **fno_sgs32** | 0.006 | 0.500 | 1.00x | yes | the default predictor (`fieldlab predict`) |",
        "| base | `cg_k2` | 0.003 | 0.600 | 1.20x | yes | fastest classical as accurate |",
        "| base | `fem_4mm` | 0.03 | 0.050 | 0.10x | yes | most accurate classical as fast |",
    ]


def test_headline_states_the_verdict_and_a_classical_default_on_the_front(tmp_path):
    """A 2x default replaced by the classical route that dominates the learned one: its row says it is on the front
    (its own point is a member) and the verdict the evaluation wrote is printed under the table."""
    verdict = "subgrid_unet (0.004 rel L2 in 0.3 s) is dominated by the classical route cg_fmg_k0"
    (tmp_path / "eval_sr.json").write_text(
        json.dumps(
            {
                "default": {"x2": {"name": "cg_fmg_k0", "rel_l2": 0.002, "seconds_per_sample": 0.2,
                                   "from": "baselines", "verdict": verdict}},
                "front": {"x2": ["cg_fmg_k0"]},
                "baselines": {"cg_fmg_k0": {"x2": {"rel_l2": 0.002, "seconds": 0.2}}},
            }
        )
    )  # fmt: skip
    text = render_headline(tmp_path)
    assert "| 2x | **cg_fmg_k0** | 0.002 | 0.200 | 1.00x | yes |" in text
    assert f"**Verdict at 2x** (`default.x2.verdict`): {verdict}." in text


def test_headline_tables_every_resolution_and_states_each_unseen_target(tmp_path):
    """The resolutions block: one row per grid with each predictor's rel L2 (seconds), the unseen grids marked, and a
    line per unseen grid whose verdicts are those of the targets it states."""
    e = lambda rel, s: {"rel_l2": rel, "rel_l2_max": rel, "seconds_per_sample": s}  # noqa: E731
    res = {
        "base": {"spacing_m": [0.002] * 3, "seen": True, "operator": e(0.016, 0.11), "front": ["operator"]},
        "1.5x": {"spacing_m": [0.002 / 1.5] * 3, "seen": False, "operator": e(0.03, 0.4), "interpolated": e(0.025, 0.2),
                 "front": ["interpolated"]},
        "targets": {"1.5x": {"ratio_base": 1.875, "ratio_base_met": False, "gain_interpolated": -0.2,
                             "gain_interpolated_met": False}},
    }  # fmt: skip
    default = {"base": {"name": "fno", "rel_l2": 0.016, "seconds_per_sample": 0.11, "from": "base"}}
    (tmp_path / "eval_sr.json").write_text(json.dumps({"default": default, "resolutions": res}))
    (tmp_path / "train_spacings.json").write_text(json.dumps({"conditioning": False}))
    text = render_headline(tmp_path)
    assert "conditioning off" in text
    assert "| 1.5x | 1.33x1.33x1.33 | **no** | 0.03 (0.40) | – | 0.025 (0.20) | – | – | – | interpolated |" in text
    assert "| base | 2x2x2 | yes | 0.016 (0.11) |" in text
    assert (
        "- 1.5x (unseen): zero shot / base 1.88 (target <= 1.2: missed); above the interpolation baseline by 20 %"
        in text
    )


def test_headline_without_a_default_predictor_is_one_error_line(tmp_path):
    (tmp_path / "inr.json").write_text(json.dumps({"final_r2": 0.99}))
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{BEGIN}\n{END}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fieldlab", "report", "--metrics", str(tmp_path), "--readme", str(readme)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "default predictor" in proc.stderr
    assert readme.read_text() == f"x\n{BEGIN}\n{END}\n"  # nothing written


def test_report_rewrites_both_blocks(tmp_path):
    """`--readme` gets the headline and `--docs` every table, each between its own markers, the rest untouched."""
    (tmp_path / "eval_sr.json").write_text(
        json.dumps(
            {
                "backbone": "fno",
                "base": {"rel_l2": 0.0158},
                "default": {"base": {"name": "fno_sgs32", "rel_l2": 0.006, "seconds_per_sample": 0.5}},
            }
        )
    )
    readme, docs = tmp_path / "README.md", tmp_path / "results.md"
    for path in (readme, docs):
        path.write_text(f"head\n{BEGIN}\nold\n{END}\ntail\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fieldlab", "report", "--metrics", str(tmp_path), "--readme", str(readme),
         "--docs", str(docs)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert block(readme) == render_headline(tmp_path) and block(docs) == render(tmp_path)
    assert "| fno |" in block(docs) and "| fno |" not in block(readme)  # the operator table is the full block's
    for path in (readme, docs):
        text = path.read_text()
        assert text.startswith(f"head\n{BEGIN}\n") and text.endswith(f"{END}\ntail\n") and "old" not in text


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
