"""The coarse_fem prior against independent truth: coarse grids of the default box derived by hand, a manufactured
solution with its observed order, current conservation, the same function at 1x and 2x, bad input one line each,
and the ``priors`` stage on a tiny corpus served by the loader."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support_train import write_corpus

from fieldlab.config import PhysicsConfig, PriorConfig, SolverConfig, config_from_dict
from fieldlab.core.io import save_npz
from fieldlab.core.seeding import numpy_rng
from fieldlab.errors import ConfigError, InputError
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
from fieldlab.potential.data.prior import free_space_prior
from fieldlab.potential.data.priors import PriorCache, compute_prior
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.physics.analytic import manufactured_cosine
from fieldlab.potential.physics.fem.coarse import coarse_fem_prior, coarse_grid, restrict
from fieldlab.potential.physics.phantom import rasterise
from fieldlab.potential.physics.resolution import block_mean, relative_l2_agreement
from fieldlab.potential.physics.sampling import sample_limb
from fieldlab.potential.schema import PotentialSample, load_sample

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-10  # solver tolerance of the exact cases
TINY_SPACING = 0.01  # m: the tiny corpus has 5 mm voxels (16x12x12) and 2.5 mm at 2x


def sample_of(sigma, source, mask, spacing, u=None) -> PotentialSample:
    """A schema-shaped sample (poles unused by the coarse prior)."""
    shape = mask.shape
    u = np.zeros(shape) if u is None else u
    return PotentialSample(
        sigma, source, mask, mask.astype(np.uint8), u, np.asarray(spacing), np.zeros((1, 3)), np.zeros((1, 3), int)
    )


def limb(index: int, grid: tuple[int, int, int], subsamples: int) -> PotentialSample:
    """Limb ``index`` of the default phantom rasterised on ``grid`` (as the corpus does at 1x and 2x)."""
    phys = PhysicsConfig()
    p, cond = sample_limb(numpy_rng(0, index), phys.phantom, phys.conductivity, phys.source)
    r = rasterise(p, cond, grid, subsamples)
    return PotentialSample(
        r.sigma, r.source, r.mask, r.tissue, np.zeros(grid), np.array(r.spacing), r.source_point, r.source_index
    )


# ---- coarse grids --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "voxel", "h", "cells", "factor"),
    [
        ((96, 48, 48), 2e-3, 4e-3, (48, 24, 24), (2, 2, 2)),
        ((96, 48, 48), 2e-3, 8e-3, (24, 12, 12), (4, 4, 4)),
        ((192, 96, 96), 1e-3, 4e-3, (48, 24, 24), (4, 4, 4)),
        ((192, 96, 96), 1e-3, 8e-3, (24, 12, 12), (8, 8, 8)),
    ],
    ids=["base-4mm", "base-8mm", "2x-4mm", "2x-8mm"],
)
def test_coarse_grid_of_the_default_box(shape, voxel, h, cells, factor):
    """The default box 96 x 96 x 192 mm: 192 / 4 = 48, 96 / 4 = 24; 192 / 8 = 24, 96 / 8 = 12 cells, at any voxel."""
    spacing = np.float32(voxel)  # the corpus stores spacing as float32
    g = coarse_grid(shape, (spacing, spacing, spacing), h)
    assert g.shape == cells and g.factor == factor
    np.testing.assert_allclose(g.spacing, (h, h, h), rtol=1e-6)


# ---- manufactured solution -----------------------------------------------------------------------------------------
def test_manufactured_solution_converges_at_second_order():
    """u = cos(pi x / Lx) cos(pi y / Ly) cos(pi z / Lz) on the insulated box [0, 1] x [0, 1] x [0, 2] with
    sigma = diag(1, 2.5, 0.4): grad u . n = 0 on every face, zero mean, f = -div(sigma grad u) = k^2 u with
    k^2 = sx (pi/Lx)^2 + sy (pi/Ly)^2 + sz (pi/Lz)^2.

    The fine grid (64x32x32 voxels of 1/32) carries the exact cell average of f, cos(pi x_c / L) times
    sinc(pi d / 2L) = sin(pi d / 2L) / (pi d / 2L) per axis, so every coarse cell sum is the exact coarse average and
    the only errors are the Q1 discretisation's: O(h^2) in L2. The prior at the fine centres is the coarse Q1 field
    itself (trilinear in each coarse cell), so its RMS error against u halves twice per halving of h: observed
    order > 1.7 for h = 1/4, 1/8, 1/16.
    """
    shape, d = (64, 32, 32), 1.0 / 32
    diag = (1.0, 2.5, 0.4)
    u, f_mid = manufactured_cosine(shape, (d, d, d), diag)
    sinc = np.prod([np.sin(np.pi * d / (2 * L)) / (np.pi * d / (2 * L)) for L in (1.0, 1.0, 2.0)])
    sigma = np.zeros((*shape, 6))
    sigma[..., :3] = diag
    s = sample_of(sigma, f_mid * sinc, np.ones(shape, dtype=bool), (d, d, d), u)
    errors = []
    for h in (1 / 4, 1 / 8, 1 / 16):
        prior, info = coarse_fem_prior(s, h, tol=TOL)
        assert info.residual <= TOL
        errors.append(float(np.sqrt(np.mean((prior - u) ** 2))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    print(f"coarse_fem manufactured: errors {errors}, orders {orders}")
    assert np.all(orders > 1.7), (errors, orders)


# ---- restriction ---------------------------------------------------------------------------------------------------
def irregular_limb(shape=(24, 16, 16)):
    """An elliptic cylinder along D (air outside) with random tissue tensors and a random zero-net source that stays
    clear of the air (in the inner ellipse)."""
    rng = np.random.default_rng(7)
    _, H, W = shape
    y, x = np.meshgrid(np.arange(H) + 0.5 - H / 2, np.arange(W) + 0.5 - W / 2, indexing="ij")
    r2 = (x / (W * 0.48)) ** 2 + (y / (H * 0.42)) ** 2
    mask = np.broadcast_to(r2 < 1, shape).copy()
    sigma = np.zeros((*shape, 6))
    sigma[mask, :3] = rng.uniform(0.05, 1.5, size=(int(mask.sum()), 3))
    inner = np.broadcast_to(r2 < 0.3, shape)
    source = np.where(inner, rng.normal(size=shape), 0.0)
    source[inner] -= source[inner].mean()
    return sigma, source, mask


def rim_voxel(mask: np.ndarray, coarse_mask: np.ndarray, coarse_fraction: np.ndarray) -> tuple[int, ...]:
    """A tissue voxel of a coarse cell that is air but holds some tissue (fraction in (0, 1/2)), 4^3 blocks."""
    rim = tuple(int(i) for i in np.argwhere(~coarse_mask & (coarse_fraction > 0))[0])
    block = tuple(slice(4 * i, 4 * i + 4) for i in rim)
    return tuple(s.start + int(i) for s, i in zip(block, np.argwhere(mask[block])[0], strict=True))


def test_restriction_conserves_current_cell_by_cell():
    """I_C = sum of f dV over the voxels of C (a loop over the blocks, not a reshape), the total kept to 1e-12 of
    sum |I|, and zero net current stays zero; the tensor of a coarse cell is the mean over its tissue voxels."""
    sigma, source, mask = irregular_limb()
    spacing = (1e-3, 1e-3, 1e-3)
    c = restrict(sigma, source, mask, spacing, 4e-3)
    assert c.grid.shape == (6, 4, 4) and c.moved_a == 0.0
    I_c = c.source * np.prod(c.grid.spacing)
    scale = np.abs(source).sum() * 1e-9
    for idx in np.ndindex(*c.grid.shape):
        block = tuple(slice(4 * i, 4 * i + 4) for i in idx)
        assert abs(I_c[idx] - source[block].sum() * 1e-9) <= 1e-12 * scale
        tissue = mask[block]
        assert c.fraction[idx] == tissue.mean()
        if c.mask[idx]:
            np.testing.assert_allclose(c.sigma[idx], sigma[block][tissue].mean(axis=0), rtol=1e-12)
        else:
            assert np.all(c.sigma[idx] == 0)
    assert abs(I_c.sum() - source.sum() * 1e-9) <= 1e-12 * scale
    assert abs(I_c.sum()) <= 1e-12 * scale


def test_negligible_current_in_coarse_air_moves_to_tissue_and_the_total_is_kept():
    """0.1% of the injected current in a tissue voxel of a coarse air cell (below the 1% refusal) ends in coarse
    tissue: nothing is left in air and the total is unchanged."""
    sigma, source, mask = irregular_limb()
    c0 = restrict(sigma, source, mask, (1e-3,) * 3, 4e-3)
    voxel = rim_voxel(mask, c0.mask, c0.fraction)
    extra = 1e-3 * source[source > 0].sum()
    source = source.copy()
    source[voxel] += extra
    source[12, 8, 8] -= extra
    c = restrict(sigma, source, mask, (1e-3,) * 3, 4e-3)
    assert np.all(c.source[~c.mask] == 0)
    assert c.moved_a == pytest.approx(extra * 1e-9, rel=1e-12)
    assert abs(c.source.sum() - source.sum() / 64) <= 1e-12 * np.abs(source).sum() / 64


def laminated_box():
    """A 16^3 box of 1 mm voxels, tissue in the rows ``3 <= h < 11`` and air elsewhere: the two tissue/air
    interfaces (normal to H) cut the 4 mm coarse cells of rows 0 (tissue fraction 1/4) and 2 (3/4). Every tissue
    voxel has its own diagonal tensor, ``sigma_xx`` constant along x (a function of (d, h)), ``sigma_zz`` constant
    along z (of (h, w)); a random zero-net source fills the tissue."""
    rng = np.random.default_rng(11)
    shape = (16, 16, 16)
    mask = np.zeros(shape, dtype=bool)
    mask[:, 3:11, :] = True
    sigma = np.zeros((*shape, 6))
    sigma[..., 0] = rng.uniform(0.05, 1.5, size=(16, 16, 1))  # xx of column (d, h) along w (x)
    sigma[..., 1] = rng.uniform(0.05, 1.5, size=shape)
    sigma[..., 2] = rng.uniform(0.05, 1.5, size=(1, 16, 16))  # zz of column (h, w) along d (z)
    sigma[~mask] = 0.0
    source = np.where(mask, rng.normal(size=shape), 0.0)
    source[mask] -= source[mask].mean()
    return sigma, source, mask


def series_parallel(g: np.ndarray) -> float:
    """Conductance of ``g[i, j, k]``: column ``(i, j)`` of conductors ``k`` in series, the columns in parallel."""
    total = 0.0
    for column in g.reshape(-1, g.shape[-1]):
        total += 0.0 if np.any(column == 0) else 1.0 / np.sum(1.0 / column)
    return total


def test_partial_volume_cells_keep_the_conductance_of_their_tissue():
    """The partial-volume restriction against the resistor network of the fine voxels, and current conservation.

    Between its two x-faces a tissue voxel conducts ``g = sigma_xx dy dz / dx``. In the laminated box a column of a
    coarse cell along x has one ``sigma_xx`` (or is air), so a potential drop across the cell's x-faces is linear in
    x in every column and no current crosses between columns: the ``r`` voxels of a column are in series and the
    ``r^2`` columns in parallel, ``G_x = sum_columns (sum_voxels 1/g)^-1`` exactly. The coarse cell conducts
    ``G_x = sigma_C,xx (r dy)(r dz) / (r dx)``, hence ``sigma_C,xx = G_x dx / (r dy dz)``; along z likewise with the
    columns along d. In a partial cell a quarter or three quarters of the columns are air; the restriction must
    give that cell the conductance of its tissue, no more (the tensor mean over tissue would overstate it by 1/t)
    and no less. The current of every coarse cell is the sum of ``f dV`` over its voxels, so the total is kept to
    round-off (a loop over the blocks, not the reshape the code uses)."""
    sigma, source, mask = laminated_box()
    d, r = 1e-3, 4
    c = restrict(sigma, source, mask, (d, d, d), r * d, partial_volume=True)
    assert c.grid.shape == (4, 4, 4) and c.moved_a == 0.0
    assert np.all(c.mask[:, :3]) and not np.any(c.mask[:, 3])  # partial cells are tissue, the air row is air
    np.testing.assert_array_equal(c.fraction, np.broadcast_to([0.25, 1.0, 0.75, 0.0], (4, 4, 4)).swapaxes(1, 2))
    I_c = c.source * (r * d) ** 3
    scale = np.abs(source).sum() * d**3
    for idx in np.ndindex(*c.grid.shape):
        block = tuple(slice(r * i, r * i + r) for i in idx)
        g_x = sigma[block][..., 0] * d * d / d  # (d, h, w): columns (d, h), in series along w
        g_z = np.moveaxis(sigma[block][..., 2], 0, -1) * d * d / d  # (h, w, d): columns (h, w), along d
        np.testing.assert_allclose(c.sigma[idx][0], series_parallel(g_x) * d / (r * d * d), rtol=1e-12, atol=0)
        np.testing.assert_allclose(c.sigma[idx][2], series_parallel(g_z) * d / (r * d * d), rtol=1e-12, atol=0)
        assert abs(I_c[idx] - source[block].sum() * d**3) <= 1e-12 * scale
    assert c.sigma[0, 0, 0, 0] > 0 and c.sigma[0, 2, 0, 0] > 0  # the partial cells conduct
    assert abs(I_c.sum() - source.sum() * d**3) <= 1e-12 * scale and abs(I_c.sum()) <= 1e-12 * scale


# ---- 1x and 2x -----------------------------------------------------------------------------------------------------
def test_same_coarse_problem_gives_the_same_function_at_1x_and_2x():
    """A limb at 1x and the same arrays at 2x (every voxel split into 8) restrict to the same coarse problem, so both
    priors sample one coarse Q1 field: the mean of a trilinear function over the 8 children of a voxel is its value
    at the voxel centre, so the 2x prior's 2x2x2 block means equal the 1x prior wherever the coarse cell is tissue,
    to round-off, once each is shifted to zero mean there (the corpus gauges also average the rim voxels in coarse air,
    where the renormalised weights are not trilinear, so they differ by a constant)."""
    s1 = limb(0, (48, 24, 24), 4)

    def split(a):
        return a.repeat(2, 0).repeat(2, 1).repeat(2, 2)

    s2 = sample_of(split(s1.sigma), split(s1.source), split(s1.mask), s1.spacing / 2)
    p1, _ = coarse_fem_prior(s1, 8e-3)
    p2, _ = coarse_fem_prior(s2, 8e-3)
    c = restrict(s1.sigma, s1.source, s1.mask, tuple(s1.spacing), 8e-3)
    inside = c.mask.repeat(2, 0).repeat(2, 1).repeat(2, 2) & s1.mask
    a, b = p1[inside], block_mean(p2, 2)[inside]
    np.testing.assert_allclose(b - b.mean(), a - a.mean(), rtol=0, atol=1e-9 * np.abs(a).max())


def test_prior_of_the_same_limb_rasterised_at_1x_and_2x():
    """The limb rasterised at 4 mm and at 2 mm (each with its own partial volumes and source sampling, as the corpus
    does) and both restricted to 8 mm: their coarse problems differ only through the rasterisation (boundary cells
    whose tissue fraction crosses 1/2, the pole sampled on 4 vs 2 mm voxels). The priors must agree, away from the
    poles, to well within the 8 mm prior's own error against the fine truth (0.23 relative L2 for the 8 mm limb FEM,
    reference.md): less than 0.1."""
    s1 = limb(1, (48, 24, 24), 4)
    s2 = limb(1, (96, 48, 48), 2)
    p1, _ = coarse_fem_prior(s1, 8e-3)
    p2, _ = coarse_fem_prior(s2, 8e-3)
    spacing = tuple(float(v) for v in s1.spacing)
    err = relative_l2_agreement(p1, s1.mask, p2, s2.mask, spacing, s1.source_point, 3 * max(spacing))
    print(f"coarse_fem 8 mm prior, 1x (4 mm) vs 2x (2 mm): {err:.4f}")
    assert err < 0.1


# ---- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "voxel", "h", "message"),
    [
        ((24, 16, 16), 1e-3, 5e-3, r"model\.prior\.coarse_spacing_m = 0\.005 m leaves \(5, 3, 3\) coarse cells"),
        ((24, 16, 16), 1e-3, 3e-3, r"model\.prior\.coarse_spacing_m = 0\.003 m divides the box .* into"),
        ((20, 20, 20), 1.5e-3, 5e-3, r"model\.prior\.coarse_spacing_m = 0\.005 m gives a 6x6x6 coarse grid"),
        ((24, 16, 16), 1e-3, -1.0, r"model\.prior\.coarse_spacing_m = -1\.0: expected a positive length"),
    ],
    ids=["fewer-than-4", "not-whole-cells", "not-a-multiple", "negative"],
)
def test_bad_spacing_is_a_one_line_config_error(shape, voxel, h, message):
    with pytest.raises(ConfigError, match=message) as exc:
        coarse_grid(shape, (voxel,) * 3, h)
    assert "\n" not in str(exc.value)


def test_source_restricted_into_air_is_a_one_line_input_error():
    """The + pole in a tissue voxel of a coarse cell that is mostly air (fraction < 1/2): all its current would land
    in coarse air."""
    sigma, source, mask = irregular_limb()
    source = np.zeros(mask.shape)
    c = restrict(sigma, np.zeros(mask.shape), mask, (1e-3,) * 3, 4e-3)
    voxel = rim_voxel(mask, c.mask, c.fraction)
    source[voxel], source[12, 8, 8] = 1.0, -1.0
    with pytest.raises(InputError, match=r"lands in coarse cells that are air .*model\.prior\.coarse_spacing_m") as exc:
        coarse_fem_prior(sample_of(sigma, source, mask, (1e-3,) * 3), 4e-3)
    assert "\n" not in str(exc.value)


# ---- the registry, the stage and the loader ------------------------------------------------------------------------
def balanced_corpus(root: Path, seed: int = 0) -> Path:
    """The training tests' tiny corpus (16x12x12, 5 mm voxels; 2x at 2.5 mm) with each source scaled on its sink
    side to zero net current, as every FEM-valid corpus has (the truncated Gaussians of ``write_corpus`` leak)."""
    write_corpus(root, grid=(16, 12, 12), seed=seed)
    for f in sorted(root.glob("*/*.npz")):
        with np.load(f) as npz:
            arrays = {k: npz[k] for k in npz.files}
        src = arrays["source"].astype(np.float64)
        src[src < 0] *= src[src > 0].sum() / -src[src < 0].sum()
        arrays["source"] = src.astype(np.float32)
        save_npz(f, **arrays)
    return root


def write_params(folder: Path, kind: str = "coarse_fem", spacing: float = TINY_SPACING) -> Path:
    path = folder / "params.yaml"
    prior = {"kind": kind, "coarse_spacing_m": spacing, "root": "data/priors"}
    path.write_text(json.dumps({"data": {"root": "data/potential"}, "model": {"prior": prior}}))
    return path


def run_stage(folder: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "stages" / "priors.py"), *overrides]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A tiny corpus under ``data/potential`` and the priors stage run once on it."""
    folder = tmp_path_factory.mktemp("priors")
    balanced_corpus(folder / "data" / "potential")
    write_params(folder)
    proc = run_stage(folder)
    assert proc.returncode == 0, proc.stderr
    return folder


def test_stage_writes_one_prior_per_sample(staged):
    data, priors = staged / "data" / "potential", staged / "data" / "priors"
    corpus = sorted(str(p.relative_to(data)) for p in data.glob("*/*.npz"))
    cached = sorted(str(p.relative_to(priors)) for p in priors.glob("*/*.npz"))
    assert cached == corpus and any(c.startswith("test_2x/") for c in cached)
    manifest = json.loads((priors / "manifest.json").read_text())
    assert manifest["kind"] == "coarse_fem" and manifest["coarse_spacing_m"] == TINY_SPACING
    assert sorted(r["file"] for r in manifest["samples"]) == corpus
    assert not list(priors.parent.glob(".priors.*"))  # no temporary folder left behind
    cfg = PriorConfig(kind="coarse_fem", coarse_spacing_m=TINY_SPACING)
    for name in ("train/0000.npz", "test_2x/0001.npz"):
        with np.load(priors / name) as npz:
            assert float(npz["coarse_spacing_m"]) == TINY_SPACING
            got = npz["prior"]
        sample = load_sample(data / name)
        want = compute_prior(sample, cfg, SolverConfig())
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
        assert abs(float(got[sample.mask].astype(np.float64).mean())) <= 1e-6 * np.abs(got).max()  # corpus gauge


def test_loader_serves_the_cached_prior(staged):
    data, priors = staged / "data" / "potential", staged / "data" / "priors"
    cfg = config_from_dict(
        {
            "data": {"root": str(data)},
            "model": {"prior": {"kind": "coarse_fem", "coarse_spacing_m": TINY_SPACING, "root": str(priors)}},
        }
    )
    scaler = FieldScaler(f_scale=1.0, u_scale=2e-3)
    kw = dataset_options(cfg, scaler, (5e-3, 5e-3, 5e-3))
    assert kw["prior_core_m"] is None and kw["prior_cache"] == PriorCache(priors, TINY_SPACING)
    for split in ("train", "test_2x"):
        files = split_files(data, split)
        item = PotentialDataset(files, **kw)[0]
        with np.load(priors / split / files[0].name) as npz:
            cached = torch.from_numpy(npz["prior"])
        torch.testing.assert_close(item["prior"][0], cached / 2e-3, rtol=0, atol=0)


def test_free_space_and_none_are_unchanged(staged):
    """The default kind still computes the free-space prior per item, and the registry returns exactly it."""
    data = staged / "data" / "potential"
    cfg = config_from_dict({"data": {"root": str(data)}})
    kw = dataset_options(cfg, FieldScaler(1.0, 2e-3), (5e-3,) * 3)
    assert kw["prior_core_m"] == cfg.model.prior.core_m and kw["prior_cache"] is None
    sample = load_sample(split_files(data, "train")[0])
    assert np.array_equal(compute_prior(sample, PriorConfig()), free_space_prior(sample, PriorConfig().core_m))
    assert compute_prior(sample, PriorConfig(kind="none")) is None


def test_missing_cache_file_is_a_one_line_error(staged, tmp_path):
    data = staged / "data" / "potential"
    ds = PotentialDataset(
        split_files(data, "val"), FieldScaler(1.0, 2e-3), prior_cache=PriorCache(tmp_path, TINY_SPACING)
    )
    with pytest.raises(InputError, match=r"no cached coarse_fem prior .*run `dvc repro priors`") as exc:
        ds[0]
    assert "\n" not in str(exc.value)
    other = PotentialDataset(
        split_files(data, "val"), FieldScaler(1.0, 2e-3), prior_cache=PriorCache(staged / "data" / "priors", 0.02)
    )
    with pytest.raises(InputError, match=r"cached with model\.prior\.coarse_spacing_m = 0\.01; expected 0\.02"):
        other[0]


def test_stage_with_another_kind_writes_only_a_manifest(staged, tmp_path):
    folder = tmp_path / "work"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "potential").symlink_to(staged / "data" / "potential")
    write_params(folder, kind="free_space")
    proc = run_stage(folder)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (folder / "data" / "priors").rglob("*"))
    assert written == ["manifest.json"]
    assert json.loads((folder / "data" / "priors" / "manifest.json").read_text())["kind"] == "free_space"


def _poison_with_air(data: Path) -> None:
    """test/0000: five of the eight voxels of a corner 2x2x2 block (one 10 mm coarse cell) become air and the + pole
    sits in one of the other three, so its current restricts into coarse air."""
    f = data / "test" / "0000.npz"
    with np.load(f) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    air = np.zeros(arrays["mask"].shape, dtype=bool)
    air[:2, :2, :2] = True
    air[1, 1, 1] = air[1, 1, 0] = air[1, 0, 1] = False
    for key in ("sigma", "u"):
        arrays[key][air] = 0
    arrays["mask"][air] = False
    arrays["tissue"][air] = 0
    source = np.zeros_like(arrays["source"])
    source[1, 1, 1], source[8, 6, 6] = 1e4, -1e4
    arrays["source"] = source
    save_npz(f, **arrays)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("spacing", r"model\.prior\.coarse_spacing_m = 0\.02 m leaves \(4, 3, 3\) coarse cells"),
        ("air", r"test/0000\.npz: source: .* lands in coarse cells that are air .*model\.prior\.coarse_spacing_m"),
    ],
)
def test_stage_bad_input_is_one_line_and_writes_nothing(staged, tmp_path, case, message):
    """Exit 2, one ``error:`` line naming the parameter, and the data folder (corpus and the previous priors) byte
    for byte as before."""
    import re
    import shutil

    folder = tmp_path / "work"
    shutil.copytree(staged / "data", folder / "data")
    write_params(folder, spacing=0.02 if case == "spacing" else TINY_SPACING)
    if case == "air":
        _poison_with_air(folder / "data" / "potential")
    before = tree_digest(folder / "data")
    proc = run_stage(folder)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), lines
    assert tree_digest(folder / "data") == before
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["potential", "priors"]


# ---- a second corpus with the same file names ----------------------------------------------------------------------
def test_a_prior_of_another_limb_is_refused(staged, tmp_path):
    """Corpus B has the file names of the staged corpus A but other limbs: A's cache is one error line for B's
    samples (the hash of B's sigma and source is not the one stored), never a silent prior of another limb."""
    other = balanced_corpus(tmp_path / "other", seed=1)
    ds = PotentialDataset(
        split_files(other, "val"), FieldScaler(1.0, 2e-3), prior_cache=PriorCache(staged / "data" / "priors", 0.01)
    )
    with pytest.raises(InputError, match=r"val/0000\.npz: cached prior of another sample .*model\.prior\.root") as exc:
        ds[0]
    assert "\n" not in str(exc.value)


def test_evaluating_a_second_corpus_uses_its_own_priors(staged, tmp_path):
    """The published-model path of a user: a checkpoint trained with the coarse_fem priors of corpus A (its
    ``model.prior.root`` names A's cache) evaluated on corpus B with B's own priors (``data.root`` and
    ``model.prior.root`` of the run). The prior's error per sample is B's prior against B's truth, computed here
    independently; pointing the run at A's cache instead stops with one error line."""
    import dataclasses

    from support_train import tiny_config
    from test_eval_sr import ZeroOperator

    from fieldlab.core.checkpoint import save_checkpoint
    from fieldlab.potential.data.priors import build_cache
    from fieldlab.potential.evaluation import zero_shot as evaluate

    other = balanced_corpus(tmp_path / "other", seed=1)
    prior_b = PriorConfig(kind="coarse_fem", coarse_spacing_m=TINY_SPACING, root=str(tmp_path / "other_priors"))
    build_cache(other, prior_b, SolverConfig())
    scaler = FieldScaler(f_scale=1.0, u_scale=1e-3)
    trained_with = {"kind": "coarse_fem", "coarse_spacing_m": TINY_SPACING, "root": str(staged / "data" / "priors")}
    ckpt = {
        "model": ZeroOperator().state_dict(),
        "model_config": {"backbone": "unet", "prior": trained_with},
        "backbone": "unet",
        "transforms": scaler.to_dict(),
        "reference_spacing": [0.005, 0.005, 0.005],
        "grid": [16, 12, 12],
        "epoch": 1,
    }
    save_checkpoint(tmp_path / "a.pt", ckpt)
    base = tiny_config(other, tmp_path)
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, prior=prior_b))
    out = evaluate.evaluate_sr(
        cfg, tmp_path / "a.pt", None, model_factory=lambda c, b: ZeroOperator(), with_front=False
    )
    for split, key in (("test", "base"), ("test_2x", "x2")):
        for f in split_files(other, split):
            sample = load_sample(f)
            mask = PotentialDataset([f], scaler, singularity_radius=1.0, reference_spacing=[0.005] * 3)[0]["mask"][0]
            mask = mask.numpy()
            prior = compute_prior(sample, prior_b, SolverConfig())
            want = np.linalg.norm((prior - sample.u)[mask]) / np.linalg.norm(sample.u[mask])
            assert out["samples"][key][f.stem]["prior_rel_l2"] == pytest.approx(want, rel=1e-4)
    wrong = dataclasses.replace(base, model=dataclasses.replace(base.model, prior=PriorConfig(**trained_with)))
    with pytest.raises(InputError, match="cached prior of another sample"):
        evaluate.evaluate_sr(
            wrong, tmp_path / "a.pt", None, model_factory=lambda c, b: ZeroOperator(), with_front=False
        )
