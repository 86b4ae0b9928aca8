"""MLS-MPM against physics: free fall, conservation of mass and momentum, the material laws, the stress formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fieldlab.errors import ConfigError, PhysicsError
from fieldlab.mpm import MPMPhysics, MPMSimulator, ParticleSet
from fieldlab.mpm.scenes import JELLY, LIQUID, SNOW, mpm128_blocks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _warp_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDLAB_WARP_CACHE", str(REPO / ".warp_cache"))


def block(center: tuple[float, float], side: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in a square of side ``side`` around ``center``, (n, 2)."""
    return np.asarray(center) + side * (rng.random((n, 2)) - 0.5)


def angular_momentum(st: dict[str, np.ndarray], m: np.ndarray, dx: float) -> float:
    """APIC angular momentum about the origin (Jiang et al. 2015, eq. 21, quadratic B-splines D = dx^2 / 4 I):
    ``L = sum_p m_p (x_p x v_p) + m_p dx^2 / 4 (C_p[1, 0] - C_p[0, 1])``."""
    x, v, C = st["x"].astype(np.float64), st["v"].astype(np.float64), st["C"].astype(np.float64)
    orbital = m * (x[:, 0] * v[:, 1] - x[:, 1] * v[:, 0])
    spin = m * dx**2 / 4.0 * (C[:, 1, 0] - C[:, 0, 1])
    return float((orbital + spin).sum())


@pytest.mark.parametrize("threads", [1, 2])
def test_free_fall_of_a_jelly_block(threads: int) -> None:
    """A block translating rigidly, away from the walls: every grid node gets v + dt g and G2P returns it, so the
    centre of mass follows symplectic Euler exactly, x_n = x0 + v0 t + g t^2 / 2 + g t dt / 2 (t = n dt). That is the
    continuum x(t) = x0 + v0 t + g t^2 / 2 up to g t dt / 2, i.e. |g| dt / (2 |v0 + g t / 2|) < 1e-3 relative to the
    displacement (at most 5e-4 for these numbers); the discrete formula itself holds to float32 round-off."""
    rng = np.random.default_rng(1)
    x0 = block((0.4, 0.6), 0.1, 400, rng)
    v0, g, dt = np.array([1.0, 1.0]), np.array([0.0, -10.0]), 1e-4
    parts = ParticleSet(x=x0, v=np.tile(v0, (400, 1)), material=np.full(400, JELLY))
    sim = MPMSimulator(MPMPhysics(n_grid=64, dt=dt, gravity=tuple(g)), parts, threads=threads)
    com0 = sim.state()["x"].astype(np.float64).mean(axis=0)
    for _ in range(20):
        sim.advance(100)
        t = sim.substeps_done * dt
        com = sim.state()["x"].astype(np.float64).mean(axis=0)
        continuum = com0 + v0 * t + 0.5 * g * t**2
        discrete = continuum + 0.5 * g * t * dt
        np.testing.assert_allclose(com, discrete, atol=2e-5)
        rel = np.linalg.norm(com - continuum) / np.linalg.norm(continuum - com0)
        assert rel < 1e-3, f"t = {t:.3f}: relative error {rel:.2e} of the centre of mass against x0 + v0 t + g t^2/2"


def test_free_fall_time_step_convergence_order() -> None:
    """Observed order of the time integration under refinement: the centre-of-mass error against the continuum
    fall at t = 0.2 s is g t dt / 2 (symplectic Euler), so halving dt halves it: log2(e(dt) / e(dt/2)) = 1. The errors
    (3 dt: 1.2e-3 .. 3e-4) stay far above float32 round-off of the positions; E = 1e3 keeps dt = 4e-4 stable."""
    rng = np.random.default_rng(6)
    x0 = block((0.4, 0.6), 0.1, 400, rng)
    v0, g, t_end = np.array([1.0, 3.0]), np.array([0.0, -30.0]), 0.2
    errors = []
    for dt in (4e-4, 2e-4, 1e-4):
        parts = ParticleSet(x=x0, v=np.tile(v0, (400, 1)), material=np.full(400, JELLY))
        sim = MPMSimulator(MPMPhysics(n_grid=64, dt=dt, E=1e3, gravity=tuple(g)), parts, threads=1)
        com0 = sim.state()["x"].astype(np.float64).mean(axis=0)
        sim.advance(round(t_end / dt))
        com = sim.state()["x"].astype(np.float64).mean(axis=0)
        errors.append(np.linalg.norm(com - (com0 + v0 * t_end + 0.5 * g * t_end**2)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(orders, 1.0, atol=0.1)


def three_blocks(rng: np.random.Generator, n: int = 300) -> tuple[ParticleSet, np.ndarray]:
    """Liquid moving right into a spinning jelly block, snow moving left into it (all inside [0.2, 0.8]^2)."""
    xl, xj, xs = block((0.3, 0.5), 0.1, n, rng), block((0.5, 0.5), 0.1, n, rng), block((0.7, 0.5), 0.1, n, rng)
    omega = 5.0
    vj = omega * np.stack([-(xj[:, 1] - 0.5), xj[:, 0] - 0.5], axis=1)
    C = np.zeros((3 * n, 2, 2))
    C[n : 2 * n] = [[0.0, -omega], [omega, 0.0]]  # the affine field of a rigid rotation
    v = np.concatenate([np.tile([2.0, 0.3], (n, 1)), vj, np.tile([-2.0, -0.2], (n, 1))])
    mat = np.repeat([LIQUID, JELLY, SNOW], n)
    return ParticleSet(x=np.concatenate([xl, xj, xs]), v=v, material=mat), C


def test_conservation_without_gravity_or_walls() -> None:
    """No gravity, walls off, blocks colliding: P2G and G2P move momentum between particles and grid without
    loss (sum_i w_ip = 1, sum_i w_ip (x_i - x_p) = 0), and internal forces of a symmetric stress cancel, so
    sum_p m_p v_p is constant up to float32 round-off over 1000 steps and sum_i m_i = sum_p m_p at every step.
    APIC angular momentum is conserved by the transfers; the MLS-MPM update of C and F drifts it by O(dt), bounded
    here by 1e-4 of sum_p m_p |x_p| |v_p|."""
    parts, C0 = three_blocks(np.random.default_rng(2))
    phys = MPMPhysics(n_grid=64, dt=1e-4, gravity=(0.0, 0.0), density=(1.0, 0.5, 0.25), wall_cells=0)
    sim = MPMSimulator(phys, parts, threads=2, C=C0)
    m = sim.mass.astype(np.float64)
    st = sim.state()
    p0 = (m[:, None] * st["v"]).sum(axis=0)
    p_scale = (m * np.linalg.norm(st["v"], axis=1)).sum()
    L0 = angular_momentum(st, m, phys.dx)
    L_scale = (m * np.linalg.norm(st["x"], axis=1) * np.linalg.norm(st["v"], axis=1)).sum()
    for _ in range(10):
        sim.advance(100)
        st = sim.state()
        np.testing.assert_allclose(sim.grid_mass().sum(dtype=np.float64), m.sum(), rtol=1e-5)
        p = (m[:, None] * st["v"].astype(np.float64)).sum(axis=0)
        assert np.abs(p - p0).max() < 1e-5 * p_scale, f"momentum {p} drifted from {p0}"
        assert abs(angular_momentum(st, m, phys.dx) - L0) < 1e-4 * L_scale
    assert np.ptp(st["x"][:, 0]) < 0.5, "blocks should still be apart from the (absent) walls"
    # the collision happened: snow was compressed plastically and the liquid was stopped
    assert (st["Jp"][parts.material == SNOW] != 1.0).any()
    assert st["v"][parts.material == LIQUID, 0].mean() < 1.5


def test_material_laws_and_stress() -> None:
    """After blocks hit the floor: liquid keeps F = sqrt(J) I; snow singular values lie in the clamp
    [1 - 2.5e-2, 1 + 4.5e-3]; Jp is exactly 1 for liquid and jelly; the stored Kirchhoff stress equals
    lambda_0 J (J - 1) I for liquid and 2 mu (F - R) F^T + lambda J (J - 1) I with h = 0.3 for jelly, R from a
    dense SVD of F (numpy), independent of the kernels' polar decomposition."""
    parts = mpm128_blocks(300, seed=3)
    parts = ParticleSet(x=parts.x, v=np.tile([0.0, -3.0], (parts.n, 1)), material=parts.material)
    phys = MPMPhysics(n_grid=64, dt=1e-4)
    sim = MPMSimulator(phys, parts, threads=2)
    sim.advance(1500)  # the snow block (top) lands after about 1400 substeps
    st, mat = sim.state(), parts.material
    F = st["F"].astype(np.float64)
    liq, jel, snow = mat == LIQUID, mat == JELLY, mat == SNOW
    assert np.array_equal(F[liq, 0, 1], np.zeros(liq.sum())) and np.array_equal(F[liq, 1, 0], np.zeros(liq.sum()))
    assert np.array_equal(F[liq, 0, 0], F[liq, 1, 1]) and (F[liq, 0, 0] > 0).all()
    assert np.abs(F[liq, 0, 0] - 1).max() > 1e-4, "the liquid should have been compressed"
    sig = np.linalg.svd(F[snow], compute_uv=False)
    lo, hi = phys.snow_clamp
    assert sig.min() >= lo - 2e-6 and sig.max() <= hi + 2e-6
    assert (st["Jp"][snow] != 1.0).any()
    assert (st["Jp"][liq] == 1.0).all() and (st["Jp"][jel] == 1.0).all()

    eye = np.eye(2)
    J = F[liq, 0, 0] ** 2
    expected = phys.lambda_0 * (J * (J - 1))[:, None, None] * eye
    np.testing.assert_allclose(st["S"][liq], expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())
    U, _, Vt = np.linalg.svd(F[jel])
    R = U @ Vt
    J = np.linalg.det(F[jel])
    h = phys.jelly_h
    tau = (
        2 * phys.mu_0 * h * (F[jel] - R) @ F[jel].transpose(0, 2, 1)
        + (phys.lambda_0 * h * J * (J - 1))[:, None, None] * eye
    )
    np.testing.assert_allclose(st["S"][jel], tau, atol=1e-3 * np.abs(tau).max())
    assert np.abs(tau).max() > 1.0, "the jelly should be stressed"


def test_threads_only_reorder_sums() -> None:
    """One and two CPU threads compute the same substeps; only the order of float32 sums differs."""
    parts = mpm128_blocks(200, seed=4)
    phys = MPMPhysics(n_grid=64)
    a, b = MPMSimulator(phys, parts, threads=1), MPMSimulator(phys, parts, threads=2)
    a.advance(100)
    b.advance(100)
    np.testing.assert_allclose(a.state()["x"], b.state()["x"], atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"dt": 0.0}, "dt"),
        ({"dt": -1e-4}, "dt"),
        ({"nu": 0.5}, "nu"),
        ({"n_grid": 4}, "n_grid"),
        ({"snow_clamp": (1.1, 1.2)}, "snow_clamp"),
        ({"density": (1.0, 0.0, 1.0)}, "density"),
    ],
)
def test_bad_physics_is_a_config_error(kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        MPMPhysics(**kwargs)


def test_particles_leaving_the_grid_raise() -> None:
    """Without walls a fast block leaves the grid: a PhysicsError, not an out-of-bounds write."""
    rng = np.random.default_rng(5)
    parts = ParticleSet(x=block((0.8, 0.5), 0.05, 50, rng), v=np.tile([20.0, 0.0], (50, 1)), material=np.ones(50))
    sim = MPMSimulator(MPMPhysics(n_grid=32, gravity=(0.0, 0.0), wall_cells=0), parts, threads=1)
    with pytest.raises(PhysicsError, match="outside the grid"):
        sim.advance(200)


def test_unknown_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"mpm\.device"):
        MPMSimulator(MPMPhysics(), mpm128_blocks(5), device="tpu")
