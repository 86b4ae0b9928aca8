"""Many sources on one limb: one assembly and one hierarchy, the same potentials, and a corpus split by limb."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict

import numpy as np
import pytest

from fieldlab.config import DataConfig, PhantomConfig, PhysicsConfig, SourceConfig
from fieldlab.core.seeding import numpy_rng
from fieldlab.errors import InputError
from fieldlab.potential.physics.corpus import generate_corpus
from fieldlab.potential.physics.fem import multisource, solver
from fieldlab.potential.physics.fem.solver import solve_potential
from fieldlab.potential.physics.phantom import rasterise, with_source
from fieldlab.potential.physics.sampling import sample_limb, sample_limb_sources
from fieldlab.potential.schema import load_sample

TINY_PHYSICS = PhysicsConfig(
    phantom=PhantomConfig(radius_m=(0.04, 0.042), subsamples=2),
    source=SourceConfig(width_m=0.008, separation_m=(0.03, 0.04), margin_m=0.006),
)
GRID = (24, 12, 12)
K = 3
#: Residual asked of every solve in the comparisons. Two gauge-fixed potentials whose relative residuals are both
#: below ``TOL`` differ by at most about ``2 kappa_2 TOL`` relative, ``kappa_2 = lambda_max / lambda_2`` of ``A`` on
#: the complement of the constants (the gauge removes the null space): about 4.4e2 on this 2775-corner grid
#: (scipy ``eigsh``, shift-invert), so ~1e-10 at ``TOL = 1e-13``, inside ``RTOL = 1e-8``. (The pinned matrix's own
#: condition number, ~1e6, bounds only the corner values before the gauge is fixed.)
TOL = 1e-13
RTOL = 1e-8


@pytest.fixture(scope="module")
def limb():
    """One tiny limb with K bipoles: the rasterised volumes and the LimbParams of each source."""
    limbs, cond = sample_limb_sources(
        numpy_rng(5, 0, 0), TINY_PHYSICS.phantom, TINY_PHYSICS.conductivity, TINY_PHYSICS.source, K
    )
    first = rasterise(limbs[0], cond, GRID, 2)
    return limbs, [first] + [with_source(first, p) for p in limbs[1:]]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_first_source_is_the_single_source_draw():
    """K = 1 draws what sample_limb draws; the extra bipoles come after it from the same generator."""
    phys = TINY_PHYSICS
    single, cond1 = sample_limb(numpy_rng(5, 0, 0), phys.phantom, phys.conductivity, phys.source)
    (only,), cond = sample_limb_sources(numpy_rng(5, 0, 0), phys.phantom, phys.conductivity, phys.source, 1)
    assert only == single and cond == cond1


def test_sources_differ_within_the_configured_ranges(limb):
    limbs, rasters = limb
    assert len({p.poles for p in limbs}) == K  # position, separation and orientation drawn per source
    lo, hi = TINY_PHYSICS.source.separation_m
    for p in limbs:
        sep = float(np.linalg.norm(np.subtract(*p.poles)))
        assert lo <= sep <= hi
        assert {k: v for k, v in p.to_dict().items() if k != "poles"} == {
            k: v for k, v in limbs[0].to_dict().items() if k != "poles"
        }
    for r in rasters[1:]:
        assert r.sigma is rasters[0].sigma and r.mask is rasters[0].mask  # one geometry, rasterised once
        total = float(r.source.sum()) * float(np.prod(r.spacing))
        assert abs(total) < 1e-9 and float(r.source.max()) > 0  # a bipole: zero net current


@pytest.mark.parametrize("prolongation", ["jacobi", "energy"])
def test_many_sources_equal_independent_single_solves(limb, prolongation):
    """Each of the K potentials is the one a separate solve_potential of that source gives (to RTOL)."""
    _, rasters = limb
    sigma, spacing = rasters[0].sigma, rasters[0].spacing
    out = multisource.solve_potential_many(sigma, [r.source for r in rasters], spacing, TOL, prolongation=prolongation)
    assert out.u.shape == (K, *GRID) and out.builds == 1
    for r, u, info in zip(rasters, out.u, out.infos, strict=True):
        single, _ = solve_potential(r.sigma, r.source, r.spacing, TOL)
        assert _rel(u, single) < RTOL
        assert info.residual <= TOL and info.attempts == 1


def test_superposition_of_sources(limb):
    """Linearity, an independent property of the exact potentials: the solve of f_0 + 2 f_1 - f_2 is
    u_0 + 2 u_1 - u_2 (both sides in the corpus gauge, which is linear too)."""
    _, rasters = limb
    out = multisource.solve_potential_many(rasters[0].sigma, [r.source for r in rasters], rasters[0].spacing, TOL)
    weights = np.array([1.0, 2.0, -1.0])
    combined = np.tensordot(weights, np.stack([r.source for r in rasters]), axes=1)
    u, _ = solve_potential(rasters[0].sigma, combined, rasters[0].spacing, TOL)
    assert _rel(np.tensordot(weights, out.u, axes=1), u) < RTOL


@pytest.mark.parametrize("method", ["gmg", "sa"])
def test_one_hierarchy_for_all_sources(limb, monkeypatch, method):
    """The hierarchy setup runs once for K sources (counted at the builder itself: the geometric one, or pyamg's
    smoothed aggregation), and the solver's counter agrees."""
    import pyamg

    calls = []
    owner, name = (solver, "geometric_hierarchy") if method == "gmg" else (pyamg, "smoothed_aggregation_solver")
    real = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    _, rasters = limb
    out = multisource.solve_potential_many(
        rasters[0].sigma, [r.source for r in rasters], rasters[0].spacing, method=method
    )
    assert len(calls) == 1 and out.builds == 1
    assert all(info.residual <= 1e-8 for info in out.infos)


def test_a_stall_gets_a_fresh_hierarchy_that_serves_the_rest(limb, monkeypatch):
    """A first hierarchy built for the wrong matrix (A + 1e3 max|A| I: a scaled identity, as good as no
    preconditioner) cannot reach 1e-8 in 40 CG steps; the fallback (after the default stencil hierarchy: geometric
    multigrid, seed 1) solves the first source and the remaining sources reuse it: two builds in all, every residual
    checked."""
    import scipy.sparse as sp

    real = multisource.build_hierarchy
    built = []

    def first_one_wrong(Ar, method, seed, prolongation="jacobi", **kw):
        built.append((method, seed))
        if len(built) == 1:
            shift = 1e3 * abs(Ar).max() * sp.identity(Ar.shape[0], format="csr")
            return real((Ar + shift).tocsr(), method, seed, prolongation, **kw)
        return real(Ar, method, seed, prolongation, **kw)

    monkeypatch.setattr(multisource, "build_hierarchy", first_one_wrong)
    _, rasters = limb
    out = multisource.solve_potential_many(
        rasters[0].sigma, [r.source for r in rasters], rasters[0].spacing, maxiter=40
    )
    assert built == [("fmg", 0), ("gmg", 1)] and out.builds == 2
    assert [i.attempts for i in out.infos] == [2, 1, 1]
    assert [i.method for i in out.infos] == ["gmg", "gmg", "gmg"]
    assert all(i.residual <= 1e-8 for i in out.infos)


def test_a_source_in_air_is_refused(limb):
    _, rasters = limb
    bad = rasters[1].source.copy()
    bad[0, 0, 0] = 1.0  # a corner voxel of the box is air
    with pytest.raises(InputError, match="air voxel"):
        multisource.solve_potential_many(rasters[0].sigma, [rasters[0].source, bad], rasters[0].spacing)


# ---- the corpus: K samples per limb, split by limb -----------------------------------------------------------------
@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    data = DataConfig(grid=GRID, n_train=2, n_val=1, n_test=1, sources_per_limb=K)
    root = tmp_path_factory.mktemp("multi")
    manifest = generate_corpus(data, TINY_PHYSICS, seed=3, root=root, progress=False)
    single = tmp_path_factory.mktemp("single")
    one = DataConfig(**{**data.__dict__, "sources_per_limb": 1, "test_2x": False})
    generate_corpus(one, TINY_PHYSICS, seed=3, root=single, progress=False)
    return root, manifest, single


def test_corpus_names_and_manifest_record_the_limb(corpora):
    root, manifest, _ = corpora
    names = {s: sorted(p.name for p in (root / s).glob("*.npz")) for s in ("train", "val", "test", "test_2x")}
    expect = {"train": 2, "val": 1, "test": 1, "test_2x": 1}
    for split, n in expect.items():
        assert names[split] == [f"{i:04d}_{k:02d}.npz" for i in range(n) for k in range(K)]
    for r in manifest["samples"]:
        i, k = map(int, re.fullmatch(r"\w+/(\d{4})_(\d{2})\.npz", r["file"]).groups())
        assert (r["limb_index"], r["source_k"]) == (i, k)
        assert r["solver_residual"] <= TINY_PHYSICS.solver.tol
    assert manifest["summary"]["limbs"] == 4 and manifest["summary"]["samples"] == 4 * K
    assert len(manifest["agreement_1x_2x"]) == K  # one per test file, each paired with its 2x file
    assert all(0 < a < 0.1 for a in manifest["agreement_1x_2x"])
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk["params"]["data"]["sources_per_limb"] == K


def test_corpus_is_split_by_limb(corpora):
    """Samples sharing a conductivity volume are one limb: its K samples sit in one split under one NNNN, and no
    two splits share a volume."""
    root, _, _ = corpora
    groups = defaultdict(set)
    for split in ("train", "val", "test"):
        for f in (root / split).glob("*.npz"):
            s = load_sample(f)
            groups[hashlib.sha256(s.sigma.tobytes()).hexdigest()].add((split, f.name[:4], f.name))
    assert len(groups) == 4
    for members in groups.values():
        assert len(members) == K
        assert len({(split, limb) for split, limb, _ in members}) == 1


def test_first_source_file_is_the_single_source_file(corpora):
    """Source 0 of a K-source limb is byte for byte the sample of the one-source corpus (same draws, same solve)."""
    root, _, single = corpora
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for i in range(n):
            assert (root / split / f"{i:04d}_00.npz").read_bytes() == (single / split / f"{i:04d}.npz").read_bytes()


def test_algebraic_corpus_agrees_with_the_default(corpora, tmp_path):
    """``physics.solver.method = sa`` with ``prolongation = energy`` (pyamg's energy-minimising smoothed aggregation,
    one source per limb through the shared-hierarchy path) writes the same layout and, within the solver tolerance,
    the same potentials as the default geometric multigrid: two solves at relative residuals ``t_a`` and ``t_b``
    agree to about ``kappa_2 (t_a + t_b)`` (``kappa_2`` as for ``TOL`` above, so below 1e-4 for residuals of 1e-8
    and the default tolerance)."""
    _, _, single = corpora
    cfg = TINY_PHYSICS.solver.__class__(method="sa", prolongation="energy", tol=1e-8)
    physics = PhysicsConfig(**{**TINY_PHYSICS.__dict__, "solver": cfg})
    data = DataConfig(grid=GRID, n_train=2, n_val=1, n_test=1, test_2x=False)
    manifest = generate_corpus(data, physics, seed=3, root=tmp_path, progress=False)
    assert sorted(r["file"] for r in manifest["samples"]) == sorted(
        p.relative_to(single).as_posix() for p in single.glob("*/*.npz")
    )
    assert {r["solver_method"] for r in manifest["samples"]} == {"sa"}
    for r in manifest["samples"]:
        assert r["solver_residual"] <= 1e-8
        algebraic, default = load_sample(tmp_path / r["file"]), load_sample(single / r["file"])
        np.testing.assert_array_equal(algebraic.source, default.source)
        assert _rel(algebraic.u.astype(np.float64), default.u.astype(np.float64)) < 1e-4
