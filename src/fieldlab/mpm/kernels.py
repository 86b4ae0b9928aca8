"""Warp kernels of one MLS-MPM / APIC substep in 2D (quadratic B-splines, fixed-corotated materials).

The substep follows Taichi's ``mpm128`` example (Hu et al. 2018, "A moving least squares material point method
with displacement discontinuity and two-way rigid body coupling"; mpm.graphics, eq. 123 for the weights):

1. P2G: scatter momentum ``w_ip (m_p v_p + A_p (x_i - x_p))`` and mass ``w_ip m_p`` to the 3x3 nodes around each
   particle, with the MLS-MPM affine term ``A_p = -dt V_p 4 / dx^2 tau_p + m_p C_p``;
2. grid update: ``v_i = (m v)_i / m_i + dt g`` and the wall condition;
3. G2P: ``v_p = sum_i w_ip v_i``, ``C_p = 4 / dx^2 sum_i w_ip v_i (x_i - x_p)^T``, ``x_p += dt v_p``, then
   ``F_p <- (I + dt C_p) F_p`` with the material's plasticity and its Kirchhoff stress ``tau_p``.

Taichi updates ``F`` at the start of the next P2G; doing it at the end of G2P is the same sequence of operations and
leaves the stored state (x, v, C, F, Jp, tau) consistent at every substep boundary. ``g2p_p2g`` fuses step 3 of one
substep with step 1 of the next, so particle data is read and written once per substep.

On the CPU Warp runs each launch on one thread and its atomics are plain adds, so the simulator splits particles
into chunks, each scattering into its own grid slice ``grid_p[k]`` (launched from separate Python threads; the
launches release the GIL); ``grid_update`` sums the slices and zeroes them for the next substep. On CUDA there is one
chunk and the atomics are real.
"""

from __future__ import annotations

import warp as wp

LIQUID = wp.constant(0)
JELLY = wp.constant(1)
SNOW = wp.constant(2)


@wp.struct
class MPMParams:
    """Constants of one simulation (units: domain [0, 1]^2, seconds, mass per unit area)."""

    n_grid: int
    dx: float
    inv_dx: float
    dt: float
    p_vol: float
    mu_0: float
    lambda_0: float
    hardening: float  # xi in h = exp(xi (1 - Jp))
    h_min: float
    h_max: float
    jelly_h: float
    sig_lo: float  # snow: singular values clamped to [sig_lo, sig_hi]
    sig_hi: float
    gravity: wp.vec2
    wall_cells: int  # 0 disables the walls
    p_mass: wp.vec3  # particle mass per material id (liquid, jelly, snow)


@wp.func
def bspline_weights(fx: float) -> wp.vec3:
    """Quadratic B-spline weights of the nodes base, base+1, base+2 at offset ``fx`` in [0.5, 1.5) (eq. 123)."""
    return wp.vec3(0.5 * (1.5 - fx) * (1.5 - fx), 0.75 - (fx - 1.0) * (fx - 1.0), 0.5 * (fx - 0.5) * (fx - 0.5))


@wp.func
def constitutive(Fp: wp.mat22, jp: float, mat: int, prm: MPMParams):
    """Plasticity return and Kirchhoff stress of a trial deformation gradient.

    ``h = clamp(exp(xi (1 - Jp)), h_min, h_max)`` (jelly: ``h = jelly_h``), ``mu = mu_0 h``, ``lambda = lambda_0 h``
    (liquid: ``mu = 0``). Snow clamps the singular values of ``F`` and moves the ratio into ``Jp``; liquid resets
    ``F = sqrt(J) I``. Fixed-corotated Kirchhoff stress ``tau = 2 mu (F - R) F^T + lambda J (J - 1) I`` with
    ``R`` the rotation of the polar decomposition of ``F``. Returns ``(F, Jp, tau)``.
    """
    h = wp.clamp(wp.exp(prm.hardening * (1.0 - jp)), prm.h_min, prm.h_max)
    if mat == JELLY:
        h = prm.jelly_h
    mu = prm.mu_0 * h
    la = prm.lambda_0 * h
    eye = wp.identity(n=2, dtype=float)
    Fn = Fp
    jn = jp
    tau = wp.mat22(0.0)
    if mat == LIQUID:
        J = wp.determinant(Fp)
        Fn = eye * wp.sqrt(J)
        tau = eye * (la * J * (J - 1.0))
    elif mat == JELLY:
        J = wp.determinant(Fp)
        # 2D polar rotation: the angle maximising tr(R^T F)
        theta = wp.atan2(Fp[1, 0] - Fp[0, 1], Fp[0, 0] + Fp[1, 1])
        c = wp.cos(theta)
        s = wp.sin(theta)
        R = wp.mat22(c, -s, s, c)
        tau = 2.0 * mu * (Fp - R) @ wp.transpose(Fp) + eye * (la * J * (J - 1.0))
    else:
        U, sig, V = wp.svd2(Fp)
        s0 = wp.clamp(sig[0], prm.sig_lo, prm.sig_hi)
        s1 = wp.clamp(sig[1], prm.sig_lo, prm.sig_hi)
        jn = jp * (sig[0] / s0)
        jn = jn * (sig[1] / s1)
        J = s0 * s1
        Fn = U @ wp.mat22(s0, 0.0, 0.0, s1) @ wp.transpose(V)
        tau = 2.0 * mu * (Fn - U @ wp.transpose(V)) @ wp.transpose(Fn) + eye * (la * J * (J - 1.0))
    return Fn, jn, tau


@wp.func
def scatter(
    xp: wp.vec2, vp: wp.vec2, affine: wp.mat22, m: float, grid_p: wp.array3d(dtype=wp.vec3), k: int, prm: MPMParams
):
    """P2G of one particle into grid slice ``k``: (m v)_i += w (m v_p + A (x_i - x_p)), m_i += w m."""
    bx = wp.clamp(int(xp[0] * prm.inv_dx - 0.5), 0, prm.n_grid - 3)  # clamped: memory-safe for stray particles
    by = wp.clamp(int(xp[1] * prm.inv_dx - 0.5), 0, prm.n_grid - 3)
    fx = xp[0] * prm.inv_dx - float(bx)
    fy = xp[1] * prm.inv_dx - float(by)
    wx = bspline_weights(fx)
    wy = bspline_weights(fy)
    mv = m * vp
    for i in range(3):
        for j in range(3):
            dpos = wp.vec2((float(i) - fx) * prm.dx, (float(j) - fy) * prm.dx)
            weight = wx[i] * wy[j]
            mom = weight * (mv + affine @ dpos)
            wp.atomic_add(grid_p, k, bx + i, by + j, wp.vec3(mom[0], mom[1], weight * m))


@wp.func
def particle_update(
    p: int,
    new_v: wp.vec2,
    new_C: wp.mat22,
    x: wp.array(dtype=wp.vec2),
    v: wp.array(dtype=wp.vec2),
    C: wp.array(dtype=wp.mat22),
    F: wp.array(dtype=wp.mat22),
    Jp: wp.array(dtype=float),
    S: wp.array(dtype=wp.mat22),
    material: wp.array(dtype=wp.int32),
    grid_p: wp.array3d(dtype=wp.vec3),
    k: int,
    prm: MPMParams,
):
    """Store v, C; F <- (I + dt C) F with plasticity; store F, Jp, tau; scatter the particle (P2G)."""
    mat = int(material[p])
    Fp = (wp.identity(n=2, dtype=float) + prm.dt * new_C) @ F[p]
    Fn, jn, tau = constitutive(Fp, Jp[p], mat, prm)
    v[p] = new_v
    C[p] = new_C
    F[p] = Fn
    Jp[p] = jn
    S[p] = tau
    m = prm.p_mass[mat]
    affine = (-prm.dt * prm.p_vol * 4.0 * prm.inv_dx * prm.inv_dx) * tau + m * new_C
    scatter(x[p], new_v, affine, m, grid_p, k, prm)


@wp.kernel
def p2g_initial(
    offset: int,
    k: int,
    x: wp.array(dtype=wp.vec2),
    v: wp.array(dtype=wp.vec2),
    C: wp.array(dtype=wp.mat22),
    F: wp.array(dtype=wp.mat22),
    Jp: wp.array(dtype=float),
    S: wp.array(dtype=wp.mat22),
    material: wp.array(dtype=wp.int32),
    grid_p: wp.array3d(dtype=wp.vec3),
    prm: MPMParams,
):
    """First P2G of a run: F <- (I + dt C) F, plasticity, stress and scatter, from the initial state."""
    p = wp.tid() + offset
    particle_update(p, v[p], C[p], x, v, C, F, Jp, S, material, grid_p, k, prm)


@wp.kernel
def grid_update(
    offset: int,
    n_slices: int,
    grid_p: wp.array3d(dtype=wp.vec3),
    grid_v: wp.array2d(dtype=wp.vec2),
    grid_m: wp.array2d(dtype=float),
    prm: MPMParams,
):
    """Sum the slices, momentum -> velocity, gravity, walls; zero the slices for the next P2G.

    Walls (Taichi's mpm128): within ``b = wall_cells`` nodes of a wall the velocity component into it is set to 0,
    ``i < b`` and ``i > n - b`` (``b`` nodes at the low walls, ``b - 1`` at the high walls), same for ``j``.
    """
    tid = wp.tid() + offset
    i = tid // prm.n_grid
    j = tid - i * prm.n_grid
    acc = wp.vec3(0.0)
    for k in range(n_slices):
        acc += grid_p[k, i, j]
        grid_p[k, i, j] = wp.vec3(0.0)
    grid_m[i, j] = acc[2]
    vi = wp.vec2(0.0)
    if acc[2] > 0.0:
        vi = (1.0 / acc[2]) * wp.vec2(acc[0], acc[1])
        vi += prm.dt * prm.gravity
        b = prm.wall_cells
        if b > 0:
            n = prm.n_grid
            if i < b and vi[0] < 0.0:
                vi[0] = 0.0
            if i > n - b and vi[0] > 0.0:
                vi[0] = 0.0
            if j < b and vi[1] < 0.0:
                vi[1] = 0.0
            if j > n - b and vi[1] > 0.0:
                vi[1] = 0.0
    grid_v[i, j] = vi


@wp.kernel
def g2p_p2g(
    offset: int,
    k: int,
    grid_v: wp.array2d(dtype=wp.vec2),
    x: wp.array(dtype=wp.vec2),
    v: wp.array(dtype=wp.vec2),
    C: wp.array(dtype=wp.mat22),
    F: wp.array(dtype=wp.mat22),
    Jp: wp.array(dtype=float),
    S: wp.array(dtype=wp.mat22),
    material: wp.array(dtype=wp.int32),
    grid_p: wp.array3d(dtype=wp.vec3),
    prm: MPMParams,
):
    """G2P (v, C, advection x += dt v) and F/Jp/stress update of one substep fused with the next substep's P2G."""
    p = wp.tid() + offset
    xp = x[p]
    bx = wp.clamp(int(xp[0] * prm.inv_dx - 0.5), 0, prm.n_grid - 3)  # clamped: memory-safe for stray particles
    by = wp.clamp(int(xp[1] * prm.inv_dx - 0.5), 0, prm.n_grid - 3)
    fx = xp[0] * prm.inv_dx - float(bx)
    fy = xp[1] * prm.inv_dx - float(by)
    wx = bspline_weights(fx)
    wy = bspline_weights(fy)
    new_v = wp.vec2(0.0)
    new_C = wp.mat22(0.0)
    for i in range(3):
        for j in range(3):
            dpos = wp.vec2(float(i) - fx, float(j) - fy)
            gv = grid_v[bx + i, by + j]
            weight = wx[i] * wy[j]
            new_v += weight * gv
            new_C += (4.0 * prm.inv_dx * weight) * wp.outer(gv, dpos)
    x[p] = xp + prm.dt * new_v
    particle_update(p, new_v, new_C, x, v, C, F, Jp, S, material, grid_p, k, prm)
