"""The potential corpus and the ``prepare`` stage on a tiny configuration: layout, schema, determinism, raw import."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fieldlab.config import DataConfig, PhantomConfig, PhysicsConfig, SourceConfig, to_dict
from fieldlab.core.io import save_npz
from fieldlab.errors import InputError
from fieldlab.potential.physics.corpus import generate_corpus, import_raw, sha256
from fieldlab.potential.physics.sampling import OOD_SHIFTS
from fieldlab.potential.schema import SAMPLE_KEYS, load_sample

ROOT = Path(__file__).resolve().parents[2]
TINY_DATA = DataConfig(grid=(24, 12, 12), n_train=2, n_val=1, n_test=1)
TINY_PHYSICS = PhysicsConfig(
    phantom=PhantomConfig(radius_m=(0.04, 0.042), subsamples=2),
    source=SourceConfig(width_m=0.008, separation_m=(0.03, 0.04), margin_m=0.006),
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    manifest = generate_corpus(TINY_DATA, TINY_PHYSICS, seed=3, root=root, progress=False)
    return root, manifest


def test_layout_and_schema(corpus):
    root, _manifest = corpus
    for split, n, shape in [("train", 2, (24, 12, 12)), ("val", 1, (24, 12, 12)), ("test", 1, (24, 12, 12))]:
        files = sorted((root / split).glob("*.npz"))
        assert [f.name for f in files] == [f"{i:04d}.npz" for i in range(n)]
        for f in files:
            s = load_sample(f)
            assert s.shape == shape
    fine = load_sample(root / "test_2x" / "0000.npz")
    assert fine.shape == (48, 24, 24)
    with np.load(root / "train" / "0000.npz") as npz:
        assert set(npz.files) == set(SAMPLE_KEYS)
        assert npz["sigma"].dtype == np.float32 and npz["u"].dtype == np.float32
        assert npz["mask"].dtype == bool and npz["tissue"].dtype == np.uint8 and npz["source_index"].dtype == np.int64


def test_samples_are_physical(corpus):
    root, manifest = corpus
    for f in sorted(root.glob("*/*.npz")):
        s = load_sample(f)
        assert np.all(s.u[~s.mask] == 0) and np.all(s.sigma[~s.mask] == 0)
        assert abs(float(s.u[s.mask].astype(np.float64).mean())) < 1e-6 * float(np.abs(s.u).max())
        assert abs(float(s.source.astype(np.float64).sum())) * np.prod(s.spacing) < 1e-9
        assert np.array_equal(s.mask, np.any(s.sigma != 0, axis=-1))
    assert all(r["solver_residual"] <= TINY_PHYSICS.solver.tol for r in manifest["samples"])


def test_manifest_records_params_checksums_and_agreement(corpus):
    root, _manifest = corpus
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk["params"] == {"data": to_dict(TINY_DATA), "physics": to_dict(TINY_PHYSICS)}
    assert on_disk["seed"] == 3
    assert len(on_disk["samples"]) == 5
    for r in on_disk["samples"]:
        assert r["sha256"] == sha256(root / r["file"])
    assert len(on_disk["agreement_1x_2x"]) == 1 and 0 < on_disk["agreement_1x_2x"][0] < 0.1


def test_deterministic_per_seed(corpus, tmp_path):
    """The same seed writes the same bytes (across engines and worker counts: test_prepare_cluster.py); another
    seed other limbs; a second run into the same folder leaves no stale split of the first."""
    _root, manifest = corpus
    again = generate_corpus(TINY_DATA, TINY_PHYSICS, seed=3, root=tmp_path, progress=False)
    assert [r["sha256"] for r in again["samples"]] == [r["sha256"] for r in manifest["samples"]]
    other = generate_corpus(DataConfig(**{**TINY_DATA.__dict__, "test_2x": False}), TINY_PHYSICS, 4, tmp_path, False)
    assert other["samples"][0]["sha256"] != manifest["samples"][0]["sha256"]
    assert not (tmp_path / "test_2x").exists()  # stale folders of the previous run are gone


def test_ood_split_shifts_exactly_one_range_and_leaves_the_corpus_unchanged(corpus, tmp_path):
    """Out-of-distribution limb i lies outside the training ranges in its own shift (i mod 4) and inside them in the
    other three; the in-distribution files are byte-identical to a corpus generated without the ood split."""
    _root, manifest = corpus
    data = DataConfig(**{**TINY_DATA.__dict__, "test_2x": False, "n_ood": 4})
    out = generate_corpus(data, TINY_PHYSICS, seed=3, root=tmp_path, progress=False)
    ood = [r for r in out["samples"] if r["split"] == "ood"]
    assert [r["file"] for r in ood] == [f"ood/{i:04d}.npz" for i in range(4)]
    assert [r["ood_shift"] for r in ood] == list(OOD_SHIFTS)
    assert out["summary"]["samples_ood"] == 4 and out["summary"]["samples"] == 4

    def in_distribution(m):
        return {r["file"]: r["sha256"] for r in m["samples"] if r["split"] in ("train", "val", "test")}

    assert in_distribution(out) == in_distribution(manifest)
    ph, src = TINY_PHYSICS.phantom, TINY_PHYSICS.source
    for r in ood:
        limb = r["limb"]
        radii = [b[2] for b in limb["bones"]]
        outside = {
            "thick_fat": limb["fat"] > ph.fat_m[1],
            "elliptic": limb["ellipticity"] > ph.ellipticity[1],
            "close_bipole": math.dist(*limb["poles"]) < src.separation_m[0],
            "large_bone": len(radii) == 1 and radii[0] > ph.bone_radius_m[1],
        }
        assert outside == {k: k == r["ood_shift"] for k in outside}
        assert r["solver_residual"] <= TINY_PHYSICS.solver.tol
        s = load_sample(tmp_path / r["file"])
        assert s.shape == TINY_DATA.grid and np.all(s.u[~s.mask] == 0)


def test_raw_import_validates_and_writes_the_layout(corpus, tmp_path):
    root, _ = corpus
    raw = tmp_path / "raw"
    raw.mkdir()
    files = sorted(root.glob("[tv]*/*.npz"))  # train, val, test (not test_2x)
    for k, f in enumerate(files):
        (raw / f"user_{k}.npz").write_bytes(f.read_bytes())
    data = DataConfig(source="raw", raw_dir=str(raw), n_train=2, n_val=1, n_test=1)
    manifest = import_raw(data, tmp_path / "out")
    assert manifest["source"] == "raw"
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").glob("*/*.npz")) == [
        "test/0000.npz",
        "train/0000.npz",
        "train/0001.npz",
        "val/0000.npz",
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.pop("u"), "missing key"),
        (lambda a: a.update(source=a["source"][:-1]), "source has shape"),
        (lambda a: a.update(sigma=np.where(a["mask"][..., None], -a["sigma"], 0)), "not positive definite"),
        (lambda a: a.update(mask=~a["mask"]), "mask differs"),
        (lambda a: a["u"].__setitem__(~a["mask"], 1.0), "air voxel"),
        (lambda a: a["source"].__setitem__(a["mask"], 1.0), "net current"),
    ],
)
def test_raw_import_names_the_bad_file(corpus, tmp_path, edit, message):
    root, _ = corpus
    raw = tmp_path / "raw"
    for k, f in enumerate(sorted(root.glob("[tv]*/*.npz"))):
        with np.load(f) as npz:
            arrays = {key: npz[key].copy() for key in npz.files}
        if k == 2:
            edit(arrays)
        save_npz(raw / f"user_{k}.npz", **arrays)
    data = DataConfig(source="raw", raw_dir=str(raw), n_train=2, n_val=1, n_test=1)
    with pytest.raises(InputError, match=rf"user_2\.npz.*{message}"):
        import_raw(data, tmp_path / "out")
    assert not (tmp_path / "out" / "train").exists()  # nothing written before every file validated


def test_raw_import_of_the_ood_split(corpus, tmp_path):
    """``raw_dir/ood/`` gives the out-of-distribution split; too few files there is an error naming data.n_ood,
    raised before anything is written."""
    root, _ = corpus
    raw = tmp_path / "raw"
    (raw / "ood").mkdir(parents=True)
    for k, f in enumerate(sorted(root.glob("[tv]*/*.npz"))):
        (raw / f"user_{k}.npz").write_bytes(f.read_bytes())
        (raw / "ood" / f"limb_{k}.npz").write_bytes(f.read_bytes())
    data = DataConfig(source="raw", raw_dir=str(raw), n_train=2, n_val=1, n_test=1, n_ood=2)
    manifest = import_raw(data, tmp_path / "out")
    ood = [r for r in manifest["samples"] if r["split"] == "ood"]
    assert [(r["file"], Path(r["origin"]).name) for r in ood] == [
        ("ood/0000.npz", "limb_0.npz"),
        ("ood/0001.npz", "limb_1.npz"),
    ]
    assert (tmp_path / "out" / "ood" / "0001.npz").read_bytes() == (raw / "ood" / "limb_1.npz").read_bytes()
    n = len(list((raw / "ood").glob("*.npz")))
    with pytest.raises(InputError, match=rf"found {n} \.npz.*data\.n_ood = {n + 1}"):
        import_raw(DataConfig(**{**data.__dict__, "n_ood": n + 1}), tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_raw_import_with_too_few_files(tmp_path):
    data = DataConfig(source="raw", raw_dir=str(tmp_path), n_train=2, n_val=1, n_test=1)
    with pytest.raises(InputError, match=r"found 0 \.npz"):
        import_raw(data, tmp_path / "out")


def write_params(path: Path, data: DataConfig) -> None:
    params = {"seed": 1, "data": to_dict(data), "physics": to_dict(TINY_PHYSICS)}
    path.write_text(yaml.safe_dump(params))


def test_stage_script_end_to_end(tmp_path):
    data = DataConfig(**{**TINY_DATA.__dict__, "n_train": 1, "test_2x": False, "root": "out/potential"})
    write_params(tmp_path / "params.yaml", data)
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics" / "prepare.json").read_text())
    assert metrics["samples"] == 3 and metrics["residual_max"] <= TINY_PHYSICS.solver.tol
    assert metrics["samples_ood"] == data.n_ood  # the ood split is counted where `dvc metrics show` reads
    assert len(list((tmp_path / "out" / "potential").glob("*/*.npz"))) == 3


def test_stage_script_bad_params_one_line(tmp_path):
    write_params(tmp_path / "params.yaml", TINY_DATA)
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py"), "physics.solver.tol=2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: params.yaml: physics.solver.tol = 2.0: expected a value < 1"]


def test_figure_is_written(corpus, tmp_path):
    from fieldlab.potential.physics.figures import plot_sample

    root, _ = corpus
    out = tmp_path / "fig.png"
    plot_sample(load_sample(root / "train" / "0000.npz"), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
