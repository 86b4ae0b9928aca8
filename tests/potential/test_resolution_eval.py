"""``eval_sr.json: resolutions`` on a tiny corpus: the interpolation baseline against an independent trilinear
prolongation, which predictors each grid gets, what ``seen`` follows, and what each predictor's seconds pay for."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.interpolate import RegularGridInterpolator
from support_train import BASE_GRID, TinyOperator, make_sample, tiny_config, write_corpus

from fieldlab.core.io import save_npz
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
from fieldlab.potential.evaluation.resolutions import (
    evaluate_resolutions,
    plot_rows,
    predictors,
    resolution_names,
    targets,
)
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.schema import cell_centres, load_sample

FINE_15 = tuple(3 * n // 2 for n in BASE_GRID)  # (12, 9, 9)


@pytest.fixture
def root(tmp_path):
    """The tiny corpus plus test_1.5x/: the test limbs' fields on the 1.5x grid (same draws, same box)."""
    root = write_corpus(tmp_path / "potential", counts=(2, 1, 2))
    for i in range(2):
        arrays = make_sample(np.random.default_rng([0, len("test"), i]), FINE_15)
        save_npz(root / "test_1.5x" / f"{i:04d}.npz", **arrays)
    return root


def datasets(cfg, root, *splits):
    train = [load_sample(f) for f in split_files(root, "train")]
    scaler = FieldScaler.fit(train)
    kw = {**dataset_options(cfg, scaler, [float(v) for v in train[0].spacing]), "cache": False}
    return scaler, [PotentialDataset(split_files(root, s), **kw) for s in splits]


def test_the_interpolation_baseline_is_a_trilinear_prolongation_of_the_base_prediction(root, tmp_path):
    """The eval's ``interpolated``: the model's base-grid prediction carried to the 1.5x centres. Here every voxel
    is tissue, so it must be the plain trilinear interpolant (scipy, the outermost centres extended as constants)
    in the corpus gauge (zero mean over the target tissue)."""
    cfg = tiny_config(root, tmp_path)
    scaler, (base, fine) = datasets(cfg, root, "test", "test_1.5x")
    torch.manual_seed(0)
    model = TinyOperator()
    runs = predictors(model, None, scaler, 0, cfg.physics, same_grid=False)
    item = {k: v[None] for k, v in fine[0].items()}
    base_item = {k: v[None] for k, v in base[0].items()}
    with torch.no_grad():
        got = runs(item, fine.sample(0), base_item, base.sample(0))["interpolated"]()
        coarse = scaler.unscale_potential(model(base_item["sigma"], base_item["f"], base_item["coords"], None))
    coarse = coarse[0, 0].double().numpy()
    axes = [cell_centres(n, 0.0, 1.0) for n in BASE_GRID]
    queries = np.meshgrid(*[cell_centres(n, 0.0, 1.0) for n in FINE_15], indexing="ij")
    clipped = [np.clip(q, a[0], a[-1]) for q, a in zip(queries, axes, strict=True)]
    expected = RegularGridInterpolator(axes, coarse)(np.stack(clipped, axis=-1))
    expected -= expected.mean()
    got = scaler.unscale_potential(got)[0, 0].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_every_grid_is_scored_and_seen_follows_the_training_spacings(root, tmp_path):
    cfg = tiny_config(root, tmp_path)
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, test_resolutions=("1.5x",), n_test_resolutions=2),
        eval=dataclasses.replace(cfg.eval, refine_sweeps=2, timing_repeats=1),
        model=dataclasses.replace(cfg.model, prior=dataclasses.replace(cfg.model.prior, kind="none")),
    )
    scaler, (base,) = datasets(cfg, root, "test")
    kw = {**dataset_options(cfg, scaler, [float(v) for v in base.sample(0).spacing]), "cache": False}
    base_dx = [float(v) for v in base.sample(0).spacing]
    fine_dx = [float(v) for v in load_sample(split_files(root, "test_2x")[0]).spacing]
    torch.manual_seed(0)
    model, seed_model = TinyOperator(), TinyOperator()
    prior_seconds = 5.0  # each sample's prior, charged to whoever reads it

    def evaluate(spacings):
        ckpt = {"train_spacings": spacings, "reference_spacing": base_dx}
        return evaluate_resolutions(
            cfg,
            model,
            seed_model,
            ckpt,
            lambda files: PotentialDataset(files, **kw),
            lambda ds: lambda i: prior_seconds,
        )

    out = evaluate([base_dx])
    assert resolution_names(cfg) == ["base", "1.5x", "2x"]
    assert list(out) == ["base", "1.5x", "2x", "targets"]
    assert [out[n]["seen"] for n in ("base", "1.5x", "2x")] == [True, False, False]
    assert "interpolated" not in out["base"]  # at base it is the operator itself
    for name in ("base", "1.5x", "2x"):
        block = out[name]
        assert {"operator", "operator_seed", "hybrid", "fem_base"} <= set(block)
        for pred in ("operator", "operator_seed", "hybrid", "fem_base", *(["interpolated"] if name != "base" else [])):
            e = block[pred]
            assert e["samples"] == 2 and 0 <= e["rel_l2"] <= e["rel_l2_max"]
        # the operator and the hybrid read the sample's prior, the interpolation the base sample's: they pay for it
        assert block["operator"]["seconds_per_sample"] >= prior_seconds
        assert block["fem_base"]["seconds_per_sample"] < prior_seconds
        assert set(block["front"]) <= set(block) - {"operator_seed"}
    assert out["1.5x"]["interpolated"]["seconds_per_sample"] >= prior_seconds
    assert set(out["targets"]) == {"1.5x", "2x"}
    assert evaluate([base_dx, fine_dx])["2x"]["seen"]  # trained on 1 mm too: 2x is seen, 1.5x still not


def test_targets_and_plot_rows_follow_the_numbers():
    def e(rel):
        return {"rel_l2": rel, "rel_l2_max": rel, "seconds_per_sample": 1.0, "seconds_spread": 0.0, "samples": 1}

    out = {
        "base": {"spacing_m": [2e-3] * 3, "seen": True, "operator": e(0.01), "front": ["operator"]},
        "1.5x": {"spacing_m": [4e-3 / 3] * 3, "seen": False, "operator": e(0.011), "interpolated": e(0.02),
                 "hybrid": e(0.005), "front": ["hybrid"]},
        "aniso": {"spacing_m": [1e-3, 1e-3, 2e-3], "seen": False, "operator": e(0.013), "interpolated": e(0.015),
                  "hybrid": e(0.02), "front": ["operator"]},
    }  # fmt: skip
    t = targets(out)
    assert set(t) == {"1.5x", "aniso"}
    assert t["1.5x"]["ratio_base_met"] and t["1.5x"]["gain_interpolated_met"] and t["1.5x"]["hybrid_on_front"]
    assert not t["aniso"]["ratio_base_met"]  # 1.3x its base error
    assert not t["aniso"]["gain_interpolated_met"]  # 13 % below the interpolation, not 20 %
    rows = plot_rows(out)
    aniso = next(r for r in rows if r["resolution"] == "aniso")
    assert aniso["voxel_mm"] == pytest.approx(2 ** (1 / 3)) and aniso["finest_mm"] == pytest.approx(1.0)
    assert sorted((r["resolution"], r["predictor"]) for r in rows if r["seen"]) == [("base", "operator")]


def test_a_missing_resolution_folder_is_named(root, tmp_path):
    cfg = tiny_config(root, tmp_path)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, test_resolutions=("aniso",), n_test_resolutions=2)
    )
    ns = SimpleNamespace(scaler=None)
    with pytest.raises(InputError, match=r"test_aniso.*data\.test_resolutions"):
        evaluate_resolutions(cfg, None, None, {"reference_spacing": [1, 1, 1]}, lambda files: ns, lambda ds: None)
