"""The Q1 finite-element solver against independent truth: element matrices, a manufactured solution, the
anisotropic point-source formula, Green's reciprocity, mirror symmetry, current conservation, bad input, fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fieldlab.errors import InputError, PhysicsError
from fieldlab.potential.physics.analytic import manufactured_cosine, point_source_potential, tensor
from fieldlab.potential.physics.fem import solver
from fieldlab.potential.physics.fem.solver import element_matrices, solve_potential
from fieldlab.potential.physics.phantom import rotate_fibre

MUSCLE = (0.2455, 0.2455, 1.2275, 0.0, 0.0, 0.0)
ROTATED = rotate_fibre(MUSCLE, math.radians(35.0), math.radians(50.0))


def homogeneous(shape: tuple[int, int, int], channels: tuple[float, ...]) -> np.ndarray:
    sigma = np.zeros((*shape, 6))
    sigma[...] = channels
    return sigma


def centres(shape: tuple[int, int, int], h: float) -> np.ndarray:
    """(D, H, W, 3) physical (x, y, z) of the voxel centres of the box [0, W h] x [0, H h] x [0, D h]."""
    z, y, x = np.meshgrid(*((np.arange(n) + 0.5) * h for n in shape), indexing="ij")
    return np.stack([x, y, z], axis=-1)


def metric_gaussian_bipole(shape, h, sig3, poles, width, current=1.0):
    """Two poles +-I, each exp(-rho^2 / (2 w^2)) with rho^2 = r^T sigma^-1 r: spherical after the change of
    variables r' = sigma^(-1/2) r, so outside its core its potential is exactly the point-source formula."""
    pts = centres(shape, h)
    inv = np.linalg.inv(sig3)
    f = np.zeros(shape)
    for sign, p in zip((1.0, -1.0), poles, strict=True):
        r = pts - np.asarray(p)
        g = np.exp(-np.einsum("...i,ij,...j->...", r, inv, r) / (2 * width**2))
        f += sign * current * g / (g.sum() * h**3)
    return f


def test_element_matrix_matches_kronecker_form():
    """Diagonal sigma on a cube of side h: K_e = h (sx Kx + sy Ky + sz Kz), Kx = M1 (x) M1 (x) K1 in the
    (d, h, w) corner order (w = x fastest), K1 = [[1,-1],[-1,1]], M1 = [[1/3,1/6],[1/6,1/3]]."""
    h = 0.5
    K = element_matrices((h, h, h))
    K1 = np.array([[1.0, -1.0], [-1.0, 1.0]])
    M1 = np.array([[1 / 3, 1 / 6], [1 / 6, 1 / 3]])
    Kx = np.kron(np.kron(M1, M1), K1)
    Ky = np.kron(np.kron(M1, K1), M1)
    Kz = np.kron(np.kron(K1, M1), M1)
    np.testing.assert_allclose(K[0], h * Kx, atol=1e-14)
    np.testing.assert_allclose(K[1], h * Ky, atol=1e-14)
    np.testing.assert_allclose(K[2], h * Kz, atol=1e-14)
    # Off-diagonal channels: symmetric, and constants are in the null space (rows sum to zero).
    for c in range(6):
        np.testing.assert_allclose(K[c], K[c].T, atol=1e-14)
        np.testing.assert_allclose(K[c].sum(axis=1), 0.0, atol=1e-14)


OFF_DIAGONAL_ENTRIES = {
    # (channel, a, b): value for (dx, dy, dz) = (0.5, 0.7, 1.1); corner index 4 c_z + 2 c_y + c_x
    "xy diagonal (000, 000)": (3, 0, 0, 1.1 / 6),
    "xy across the z-face (000, 011)": (3, 0, 3, -1.1 / 6),
    "xy along x only (000, 001)": (3, 0, 1, 0.0),
    "xy through the box (000, 111)": (3, 0, 7, -1.1 / 12),
    "xy anti-diagonal of a face (001, 010)": (3, 1, 2, 1.1 / 6),
    "xy up one layer (000, 100)": (3, 0, 4, 1.1 / 12),
    "xz across the y-face (000, 101)": (4, 0, 5, -0.7 / 6),
    "xz diagonal (000, 000)": (4, 0, 0, 0.7 / 6),
    "yz across the x-face (000, 110)": (5, 0, 6, -0.5 / 6),
    "yz through the box (000, 111)": (5, 0, 7, -0.5 / 12),
}


@pytest.mark.parametrize(("channel", "a", "b", "want"), OFF_DIAGONAL_ENTRIES.values(), ids=list(OFF_DIAGONAL_ENTRIES))
def test_off_diagonal_element_matrix_entries_derived_by_hand(channel, a, b, want):
    """K_xy = G_xy + G_yx on the box [0, dx] x [0, dy] x [0, dz], by hand.

    Corner a has bits (c_z, c_y, c_x) and N_a = X_a(x) Y_a(y) Z_a(z) with X_a = x / dx if c_x = 1, else
    1 - x / dx (alike in y, z), so dX_a/dx = s^x_a / dx with s = +1 for c = 1 and -1 for c = 0. Then

        G_xy[a, b] = int dN_a/dx dN_b/dy dV = (s^x_a / dx)(s^y_b / dy) int X_b dx  int Y_a dy  int Z_a Z_b dz
                   = (s^x_a s^y_b / (dx dy)) (dx / 2)(dy / 2) dz m(c^z_a, c^z_b),

    with m = 1/3 for equal bits (int_0^1 t^2 dt) and 1/6 for different ones (int_0^1 t (1 - t) dt), so

        K_xy[a, b] = dz m(c^z_a, c^z_b) (s^x_a s^y_b + s^y_a s^x_b) / 4,

    which does not depend on dx or dy. E.g. a = b = 000: dz (1/3)(1 + 1) / 4 = dz / 6; a = 000, b = 011:
    dz (1/3)(-1 - 1) / 4 = -dz / 6; a = 000, b = 001: (-1)(-1) + (-1)(+1) = 0; a = 000, b = 111: -dz / 12.
    K_xz and K_yz follow by exchanging the roles: dy m(c^y) (s^x s^z + s^z s^x) / 4 and dx m(c^x) (...) / 4.
    """
    K = element_matrices((0.5, 0.7, 1.1))
    assert K[channel, a, b] == pytest.approx(want, abs=1e-14)
    assert K[channel, b, a] == pytest.approx(want, abs=1e-14)


@pytest.mark.parametrize("method", ["gmg", "sa", "mf", "fmg"])
def test_manufactured_solution_converges_at_second_order(method):
    """u = cos(pi x/Lx) cos(pi y/Ly) cos(pi z/Lz) on a box with zero normal flux and sigma = diag(1, 2.5, 0.4):
    f = (sx (pi/Lx)^2 + sy (pi/Ly)^2 + sz (pi/Lz)^2) u. Q1 elements give O(h^2) at the voxel centres; the
    observed order over three grids must be 2 +- 0.25, with the geometric and the algebraic multigrid, and the
    matrix-free multigrid on stencils from zero and from nested iteration."""
    diag = (1.0, 2.5, 0.4)
    errors = []
    for n in (8, 16, 32):
        shape = (n, n, 2 * n)  # (D, H, W): a non-cubic box, Lx = 2, Ly = Lz = 1
        spacing = (1.0 / n, 1.0 / n, 1.0 / n)
        u_exact, f = manufactured_cosine(shape, spacing, diag)
        u, info = solve_potential(homogeneous(shape, (*diag, 0.0, 0.0, 0.0)), f, spacing, tol=1e-10, method=method)
        assert info.residual <= 1e-10 and info.method == method
        errors.append(np.sqrt(np.mean((u - u_exact) ** 2)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.25), (errors, orders)


@pytest.mark.parametrize("method", ["gmg", "sa", "mf", "fmg"])
@pytest.mark.parametrize("channels", [MUSCLE, ROTATED], ids=["diagonal", "rotated"])
def test_point_source_matches_anisotropic_formula(channels, method):
    """A bipole (poles 8 h apart along z) in a 64x32x32 box vs the sum over poles of
    Phi = I erf(rho / (sqrt2 w)) / (4 pi sqrt(det s) rho), rho = sqrt(r^T s^-1 r) (exact for the metric Gaussian).

    Gauge and the insulating walls: the walls add a smooth harmonic field; the symmetric combination
    S = u(c + r1 e) + u(c - r1 e) - u(c + r2 e) - u(c - r2 e) around the + pole cancels the gauge and the linear
    part of that field, leaving terms of order (r / R_wall)^2. Tolerance 5%: the Q1 interpolation error of the 1/r
    field at r1 = 4 h is about (h / r1)^2 / 4 = 1.6% of Phi(r1), i.e. about 3% of S, plus the wall remainder.
    """
    shape, h = (64, 32, 32), 1e-3
    sig3 = tensor(channels)
    pts = centres(shape, h)
    c = np.array([shape[0] // 2 - 4, shape[1] // 2, shape[2] // 2])  # (d, h, w) of the + pole
    poles = [pts[tuple(c)], pts[tuple(c + np.array([8, 0, 0]))]]
    width = 2 * h / math.sqrt(np.linalg.eigvalsh(sig3).min())  # the narrowest axis of a pole spans 2 voxels
    f = metric_gaussian_bipole(shape, h, sig3, poles, width)
    u, info = solve_potential(homogeneous(shape, channels), f, (h, h, h), tol=1e-10, method=method)
    assert info.method == method
    phi = point_source_potential(pts, poles[0], 1.0, sig3, width) - point_source_potential(
        pts, poles[1], 1.0, sig3, width
    )
    for e in [np.array(d) for d in ((0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, -1))]:  # x, y and the xy diagonals

        def sym(v, e=e):
            return v[tuple(c + 4 * e)] + v[tuple(c - 4 * e)] - v[tuple(c + 8 * e)] - v[tuple(c - 8 * e)]

        assert abs(sym(u) / sym(phi) - 1.0) < 0.05, (e, sym(u), sym(phi))


def limb_like(shape=(24, 16, 16)):
    """A homogeneous elliptic cylinder along D with a resistive off-centre core, symmetric under x -> -x."""
    D, H, W = shape
    y, x = np.meshgrid(np.arange(H) + 0.5 - H / 2, np.arange(W) + 0.5 - W / 2, indexing="ij")
    section = (x / (W * 0.45)) ** 2 + (y / (H * 0.4)) ** 2 < 1
    core = x**2 + (y - 2) ** 2 < 4
    sigma = np.zeros((D, H, W, 6))
    sigma[:, section] = MUSCLE
    sigma[:, core] = (0.02, 0.02, 0.02, 0, 0, 0)
    return sigma


def bipole(shape, a, b):
    f = np.zeros(shape)
    f[a], f[b] = 1.0, -1.0
    return f


@pytest.mark.parametrize("method", ["gmg", "mf", "fmg"])
def test_reciprocity_green(method):
    """Green's reciprocity: the work of bipole B in the field of bipole A equals that of A in the field of B,
    sum f_B u_A dV = sum f_A u_B dV (the FEM matrix is symmetric and the load is P^T f dV)."""
    sigma = limb_like()
    # a small xy coupling keeps the tensor positive definite and breaks the symmetries
    sigma[np.any(sigma != 0, axis=-1), 3] = 0.01
    shape = sigma.shape[:3]
    fa = bipole(shape, (5, 8, 6), (9, 5, 9))
    fb = bipole(shape, (15, 10, 8), (20, 6, 6))
    ua, _ = solve_potential(sigma, fa, (1e-3, 1e-3, 1e-3), tol=1e-10, method=method)
    ub, _ = solve_potential(sigma, fb, (1e-3, 1e-3, 1e-3), tol=1e-10, method=method)
    wab, wba = float((fb * ua).sum()), float((fa * ub).sum())
    assert abs(wab - wba) <= 1e-7 * abs(wab)
    assert abs(wab) > 0


def test_mirror_symmetry():
    """Geometry and source symmetric under x -> -x (W flipped) give a potential with the same symmetry."""
    sigma = limb_like()
    shape = sigma.shape[:3]
    f = np.zeros(shape)
    f[6, 8, 7] = f[6, 8, 8] = 0.5  # both voxels adjacent to the mirror plane
    f[18, 8, 7] = f[18, 8, 8] = -0.5
    u, _ = solve_potential(sigma, f, (1e-3, 1e-3, 1e-3), tol=1e-10)
    np.testing.assert_allclose(u, u[:, :, ::-1], atol=1e-8 * np.abs(u).max())


@pytest.mark.parametrize("channels", [MUSCLE, ROTATED], ids=["diagonal", "rotated"])
def test_current_conservation(channels):
    """The outward current -sigma grad u through a closed box of faces around the + pole equals the current the
    source injects inside that box (the part of the two Gaussian poles enclosed).

    Face currents: normal derivative from the two cells sharing the face, tangential ones from the mean of their
    central differences. Both are second order on the smooth field 6 h from the pole: tolerance 3%.
    """
    n, h = 40, 1e-3
    sig3 = tensor(channels)
    c = n * h / 2
    poles = [(c, c, c - 6 * h), (c, c, c + 10 * h)]
    width = 1.5 * h / math.sqrt(np.linalg.eigvalsh(sig3).min())
    f = metric_gaussian_bipole((n, n, n), h, sig3, poles, width)
    u, _ = solve_potential(homogeneous((n, n, n), channels), f, (h, h, h), tol=1e-10)
    grad = np.stack(np.gradient(u, h)[::-1], axis=-1)  # (D, H, W, 3) central (x, y, z) derivatives
    centre = (n // 2 - 6, n // 2, n // 2)  # voxel (d, h, w) holding the + pole (at a corner of it)
    lo = [k - 6 for k in centre]
    hi = [k + 6 for k in centre]  # cells lo..hi-1 inside the box
    flux = 0.0
    for axis in range(3):  # array axis (d, h, w) -> physical component 2 - axis
        comp = 2 - axis
        for side, sign in ((lo[axis], -1.0), (hi[axis], 1.0)):
            sl_in = [slice(lo[k], hi[k]) for k in range(3)]
            sl_out = list(sl_in)
            sl_in[axis] = slice(side - 1, side) if sign > 0 else slice(side, side + 1)
            sl_out[axis] = slice(side, side + 1) if sign > 0 else slice(side - 1, side)
            g = 0.5 * (grad[tuple(sl_in)] + grad[tuple(sl_out)])
            g[..., comp] = sign * (u[tuple(sl_out)] - u[tuple(sl_in)]) / h
            current = -np.einsum("ij,...j->...i", sig3, g)[..., comp]
            flux += sign * float(current.sum()) * h * h
    enclosed = float(f[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].sum()) * h**3  # Gauss: the current inside
    assert enclosed > 0.5
    assert abs(flux - enclosed) < 0.03 * enclosed


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("shape", "expected .* to match sigma"),
        ("nonfinite", "non-finite"),
        ("not_pd", "not positive definite"),
        ("outside", "air voxel"),
        ("net_current", "net current"),
        ("channels", r"expected \(D, H, W, 6\)"),
    ],
)
def test_bad_input_is_refused(case, message):
    sigma = homogeneous((6, 6, 6), MUSCLE)
    sigma[:, :, 0] = 0.0  # an air column
    f = bipole((6, 6, 6), (1, 1, 2), (4, 4, 4))
    if case == "shape":
        f = f[:5]
    elif case == "nonfinite":
        sigma[2, 2, 2, 0] = np.nan
    elif case == "not_pd":
        sigma[3, 3, 3] = (1.0, 1.0, 1.0, 2.0, 0.0, 0.0)  # |xy| > sqrt(xx yy)
    elif case == "outside":
        f[0, 0, 0] = 1.0
        f[4, 4, 4] = -2.0
    elif case == "net_current":
        f[4, 4, 4] = -0.5
    elif case == "channels":
        sigma = sigma[..., :3]
    with pytest.raises(InputError, match=message):
        solve_potential(sigma, f, (1e-3, 1e-3, 1e-3))


def test_amg_fallback_recovers_from_a_stalled_hierarchy(monkeypatch):
    """A first hierarchy that returns garbage (as a stalled multigrid-CG would) is caught by the true-residual check
    and the solve switches to the next method (geometric -> smoothed aggregation); the answer equals the normal
    solve."""
    sigma = limb_like()
    f = bipole(sigma.shape[:3], (5, 8, 6), (18, 5, 9))
    reference, _ = solve_potential(sigma, f, (1e-3, 1e-3, 1e-3), tol=1e-10)
    real = solver._amg_solve
    calls = []

    def flaky(A, b, method, tol, maxiter, seed, grid):
        calls.append(method)
        x, it = real(A, b, method, tol, maxiter, seed, grid)
        return (x * 0.5, it) if len(calls) == 1 else (x, it)

    monkeypatch.setattr(solver, "_amg_solve", flaky)
    u, info = solve_potential(sigma, f, (1e-3, 1e-3, 1e-3), tol=1e-10, method="gmg")
    assert calls == ["gmg", "sa"]
    assert info.method == "sa" and info.attempts == 2 and info.residual <= 1e-10
    np.testing.assert_allclose(u, reference, atol=1e-6 * np.abs(reference).max())


def test_unconverged_solve_raises(monkeypatch):
    sigma = limb_like()
    f = bipole(sigma.shape[:3], (5, 8, 6), (18, 5, 9))
    real = solver._amg_solve
    monkeypatch.setattr(solver, "_amg_solve", lambda *a, **k: (real(*a, **k)[0] * 0.5, 1))
    with pytest.raises(PhysicsError, match="did not converge"):
        solve_potential(sigma, f, (1e-3, 1e-3, 1e-3), max_attempts=2, method="gmg")


def test_solve_is_deterministic_and_gauged():
    sigma = limb_like()
    f = bipole(sigma.shape[:3], (5, 8, 6), (18, 5, 9))
    u1, _ = solve_potential(sigma, f, (1e-3, 1e-3, 1e-3))
    u2, _ = solve_potential(sigma, f, (1e-3, 1e-3, 1e-3))
    mask = np.any(sigma != 0, axis=-1)
    assert np.array_equal(u1, u2)
    assert np.all(u1[~mask] == 0)
    assert abs(u1[mask].mean()) < 1e-12 * np.abs(u1).max()
