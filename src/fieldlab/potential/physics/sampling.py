"""Seeded draws of limb geometries and source positions from the ranges in ``params.yaml: physics``."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from fieldlab.config import ConductivityConfig, PhantomConfig, PhysicsConfig, SourceConfig
from fieldlab.errors import InputError, PhysicsError
from fieldlab.potential.physics.phantom import Conductivities, LimbParams, isotropic, label_points, rotate_fibre
from fieldlab.potential.schema import TISSUES

#: Rejection-sampling budget for bone and pole positions.
MAX_TRIES = 2000
#: Directions (unit vectors) probed at distance ``margin`` around a pole: the 26 lattice neighbours.
_PROBES = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)])
_PROBES = _PROBES / np.linalg.norm(_PROBES, axis=1, keepdims=True)
#: Shifts of the out-of-distribution split; limb ``i`` takes ``OOD_SHIFTS[i % 4]`` (ranges in ``physics.ood``).
OOD_SHIFTS = ("thick_fat", "elliptic", "close_bipole", "large_bone")
#: Limbs drawn in turn for one out-of-distribution sample before giving up (a shifted range can leave no room for
#: the bones or the poles of a small limb; such a limb is redrawn whole).
OOD_REDRAWS = 50


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[1] > bounds[0] else float(bounds[0])


def _in_muscle(p: LimbParams, point: np.ndarray, margin: float) -> bool:
    """True when ``point`` and every probe at distance ``margin`` around it are muscle and inside the box ends."""
    pts = point[None, :] + np.vstack([np.zeros(3), margin * _PROBES])  # (27, 3) (x, y, z)
    if np.any(np.abs(pts[:, 2]) > p.box_m[2] / 2):
        return False
    return bool(np.all(label_points(p, pts[:, 0], pts[:, 1], pts[:, 2]) == TISSUES["muscle"]))


def sample_limb(
    rng: np.random.Generator, phantom: PhantomConfig, conductivity: ConductivityConfig, source: SourceConfig
) -> tuple[LimbParams, Conductivities]:
    """Draw one limb, its bones, its two source poles and the (possibly rotated) muscle tensor.

    Every value is uniform in its configured range; bones are placed inside the muscle with a 2 mm clearance and
    without overlap; the ``+I`` pole is uniform in the muscle at least ``margin`` from any other tissue, the ``-I``
    pole at a uniform distance in ``separation_m`` along a uniform random direction, under the same condition.
    """
    radius = _uniform(rng, phantom.radius_m)
    ellipticity = _uniform(rng, phantom.ellipticity)
    taper = _uniform(rng, phantom.taper)
    skin = _uniform(rng, phantom.skin_m)
    fat = _uniform(rng, phantom.fat_m)
    n_bones = int(rng.integers(phantom.bones[0], phantom.bones[1] + 1))
    inner = (radius * (1 - abs(taper)) - skin - fat) * (1 - ellipticity)  # muscle radius everywhere, conservative
    clearance = 0.002
    bones: list[tuple[float, float, float]] = []
    for _ in range(MAX_TRIES):  # draw the whole set of bones until it fits without overlap
        bones = []
        for _ in range(n_bones):
            br = _uniform(rng, phantom.bone_radius_m)
            reach = max(inner - br - clearance, 0.0)
            rho, theta = reach * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
            bones.append((rho * math.cos(theta), rho * math.sin(theta), br))
        fits = all(math.hypot(bx, by) + br + clearance <= inner for bx, by, br in bones)
        apart = all(
            math.hypot(a[0] - b[0], a[1] - b[1]) > a[2] + b[2] + clearance
            for i, a in enumerate(bones)
            for b in bones[i + 1 :]
        )
        if fits and apart:
            break
    else:
        raise PhysicsError(f"could not place {n_bones} bone(s) in a muscle of radius {inner:.4f} m; shrink bones")
    limb = LimbParams(
        box_m=tuple(phantom.box_m),  # type: ignore[arg-type]
        radius=radius,
        ellipticity=ellipticity,
        taper=taper,
        skin=skin,
        fat=fat,
        bones=tuple(bones),
        poles=((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        current=source.current_a,
        width=source.width_m,
    )
    limb = draw_poles(rng, limb, source)
    muscle = tuple(conductivity.muscle)
    tilt = _uniform(rng, conductivity.fibre_tilt_deg)
    if tilt > 0:
        muscle = rotate_fibre(muscle, math.radians(tilt), rng.uniform(0, 2 * math.pi))
    cond = Conductivities(
        skin=isotropic(conductivity.skin),
        fat=isotropic(conductivity.fat),
        muscle=muscle,
        bone=isotropic(conductivity.bone),
    )
    return limb, cond


def draw_poles(rng: np.random.Generator, limb: LimbParams, source: SourceConfig) -> LimbParams:
    """``limb`` with a fresh bipole: ``+I`` uniform in the box, ``-I`` at a uniform distance in ``separation_m``
    along a uniform random direction, redrawn until both lie in muscle at least ``margin_m`` from other tissue."""
    Lx, Ly, Lz = limb.box_m
    for _ in range(MAX_TRIES):
        plus = rng.uniform(-0.5, 0.5, size=3) * np.array([Lx, Ly, Lz])
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        minus = plus + _uniform(rng, source.separation_m) * direction
        if _in_muscle(limb, plus, source.margin_m) and _in_muscle(limb, minus, source.margin_m):
            poles = (tuple(float(v) for v in plus), tuple(float(v) for v in minus))
            return LimbParams(**{**limb.__dict__, "poles": poles})
    raise PhysicsError("could not place the source poles in the muscle; lower physics.source.margin_m")


def sample_limb_sources(
    rng: np.random.Generator,
    phantom: PhantomConfig,
    conductivity: ConductivityConfig,
    source: SourceConfig,
    n_sources: int,
) -> tuple[list[LimbParams], Conductivities]:
    """One limb (:func:`sample_limb`) and ``n_sources`` bipoles in it: the limb's own, then ``n_sources - 1``
    more from :func:`draw_poles` on the same generator. Each returned :class:`LimbParams` is the same geometry
    with its own ``poles``; ``n_sources = 1`` draws exactly what :func:`sample_limb` draws."""
    if n_sources < 1:
        raise InputError(f"n_sources = {n_sources}; expected at least one source per limb")
    limb, cond = sample_limb(rng, phantom, conductivity, source)
    return [limb] + [draw_poles(rng, limb, source) for _ in range(n_sources - 1)], cond


def ood_shift(index: int) -> str:
    """The shift of out-of-distribution limb ``index``: the four of :data:`OOD_SHIFTS` in turn."""
    return OOD_SHIFTS[index % len(OOD_SHIFTS)]


def ood_ranges(physics: PhysicsConfig, shift: str) -> tuple[PhantomConfig, SourceConfig]:
    """The training ranges with the one range of ``shift`` replaced by its ``physics.ood`` range (``large_bone``:
    one bone of radius ``physics.ood.bone_radius_m``)."""
    phantom, source, ood = physics.phantom, physics.source, physics.ood
    if shift == "thick_fat":
        return replace(phantom, fat_m=ood.fat_m), source
    if shift == "elliptic":
        return replace(phantom, ellipticity=ood.ellipticity), source
    if shift == "close_bipole":
        return phantom, replace(source, separation_m=ood.separation_m)
    if shift == "large_bone":
        return replace(phantom, bones=(1, 1), bone_radius_m=ood.bone_radius_m), source
    raise InputError(f"out-of-distribution shift {shift!r}: expected one of {', '.join(OOD_SHIFTS)}")


def sample_ood_limb(
    rng: np.random.Generator, physics: PhysicsConfig, index: int
) -> tuple[LimbParams, Conductivities, str]:
    """Out-of-distribution limb ``index``: :func:`sample_limb` under :func:`ood_ranges` of :func:`ood_shift`; a limb
    whose bones or poles do not fit is redrawn whole (up to :data:`OOD_REDRAWS` times). Returns the shift too."""
    shift = ood_shift(index)
    phantom, source = ood_ranges(physics, shift)
    for _ in range(OOD_REDRAWS):
        try:
            limb, cond = sample_limb(rng, phantom, physics.conductivity, source)
        except PhysicsError:
            continue
        return limb, cond, shift
    raise PhysicsError(
        f"could not draw an out-of-distribution limb ({shift}) in {OOD_REDRAWS} tries; narrow physics.ood"
    )
