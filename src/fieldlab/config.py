"""One typed, validated configuration: ``params.yaml`` -> nested frozen dataclasses.

Every section of ``params.yaml`` is a dataclass below. Loading checks every key: unknown keys, wrong types and
out-of-range values raise :class:`~fieldlab.errors.ConfigError` with one line naming the dotted key, the value
received and what is allowed, e.g. ``params.yaml: train.lr = -0.001: expected a number > 0``.

Dotted overrides use the grammar of ``dvc exp run -S``: ``model.backbone=unet``, ``train.lr=3e-4``,
``data.grid=[48,24,24]``; the value is parsed as YAML.

Ranges and choices live in the field metadata (:func:`spec`), next to the default they constrain.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from fieldlab.errors import ConfigError

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 and ``dvc -S`` do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with the project's loader (scientific notation without a dot is a float)."""
    return yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader: no arbitrary objects


def spec(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with a default and inclusive/exclusive bounds checked on load.

    Bounds apply to numbers and element-wise to tuples of numbers.
    """
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc})


# ----------------------------------------------------------------------------------------------------------------
# Sections. Each stage reads only its own sections (see dvc.yaml `params:`).
# ----------------------------------------------------------------------------------------------------------------


# ---- data: the potential corpus -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """Where the potential corpus comes from, its size and its grid."""

    source: Literal["synthetic", "raw"] = "synthetic"
    root: str = "data/potential"
    raw_dir: str = "data/raw/potential"
    grid: tuple[int, int, int] = spec((96, 48, 48), ge=4, doc="base grid (D, H, W)")
    coord_range: tuple[float, float] = (-1.0, 1.0)
    n_train: int = spec(80, ge=1)
    n_val: int = spec(10, ge=1)
    n_test: int = spec(10, ge=1)
    test_2x: bool = True
    workers: int = spec(0, ge=0, doc="parallel processes for generation; 0 = all cores")


# ---- physics: phantom, conductivities, source, solver ---------------------------------------------------------
def _check_ranges(obj: Any, section: str) -> None:
    """Every ``tuple[float, float]`` field of ``obj`` is a (low, high) range: require low <= high."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("range") and value[0] > value[1]:
            raise ConfigError(f"params: {section}.{f.name} = {list(value)}: expected [low, high] with low <= high")


def _range(default: tuple[float, float], *, gt: float | None = None, ge: float | None = None, doc: str = "") -> Any:
    """A (low, high) range field; each sample draws uniformly from it."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "doc": doc, "range": True})


@dataclass(frozen=True)
class PhantomConfig:
    """Ranges of the limb geometry (metres); each sample draws every value uniformly from its range."""

    box_m: tuple[float, float, float] = spec((0.096, 0.096, 0.192), gt=0, doc="physical box (Lx, Ly, Lz)")
    radius_m: tuple[float, float] = _range((0.030, 0.042), gt=0, doc="outer limb radius at z = 0")
    ellipticity: tuple[float, float] = _range((0.0, 0.1), ge=0, doc="semi-axes R (1 +- e)")
    taper: tuple[float, float] = _range((-0.1, 0.1), doc="relative radius change from z = 0 to the box end")
    skin_m: tuple[float, float] = _range((0.001, 0.002), gt=0)
    fat_m: tuple[float, float] = _range((0.003, 0.006), gt=0)
    bones: tuple[int, int] = spec((1, 2), ge=1, le=2, doc="range of the number of bones")
    bone_radius_m: tuple[float, float] = _range((0.006, 0.009), gt=0)
    subsamples: int = spec(4, ge=1, le=8, doc="partial-volume sub-samples per axis per base voxel")

    def __post_init__(self) -> None:
        _check_ranges(self, "physics.phantom")
        if self.bones[0] > self.bones[1]:
            raise ConfigError(f"params: physics.phantom.bones = {list(self.bones)}: expected [low, high], low <= high")


@dataclass(frozen=True)
class ConductivityConfig:
    """Tissue conductivities (S/m); muscle is the full tensor (xx, yy, zz, xy, xz, yz), the others isotropic."""

    # Muscle 1:5 anisotropy, stiff along the fibres (z); layered-cylinder EMG models use 0.1 / 0.5 S/m.
    muscle: tuple[float, float, float, float, float, float] = (0.2455, 0.2455, 1.2275, 0.0, 0.0, 0.0)
    # Skin: reported values span 0.1-1 S/m (dry to wet); 0.5 is mid-range.
    skin: float = spec(0.5, gt=0)
    # Fat 0.04 S/m and cortical bone 0.02 S/m (Gabriel et al. 1996; layered EMG models, e.g. Lowery et al. 2002).
    fat: float = spec(0.04, gt=0)
    bone: float = spec(0.02, gt=0)
    fibre_tilt_deg: tuple[float, float] = _range((0.0, 0.0), ge=0, doc="fibre tilt from z; 0 = diagonal tensor")

    def __post_init__(self) -> None:
        _check_ranges(self, "physics.conductivity")


@dataclass(frozen=True)
class SourceConfig:
    """Bipolar current source: two Gaussian poles of fixed physical width in the muscle."""

    current_a: float = spec(1e-3, gt=0, doc="current of each pole (A)")
    width_m: float = spec(0.002, gt=0, doc="Gaussian standard deviation of each pole")
    separation_m: tuple[float, float] = _range((0.015, 0.04), gt=0, doc="distance between the poles")
    margin_m: float = spec(0.004, ge=0, doc="least distance of a pole from fat, bone and the box ends")

    def __post_init__(self) -> None:
        _check_ranges(self, "physics.source")


@dataclass(frozen=True)
class SolverConfig:
    """AMG-preconditioned CG on the Q1 finite-element system."""

    tol: float = spec(1e-8, gt=0, lt=1, doc="true relative residual ||b - A u|| / ||b||")
    maxiter: int = spec(300, ge=1)
    method: Literal["sa", "rs"] = "sa"
    attempts: int = spec(3, ge=1, doc="AMG hierarchies tried (alternating sa / rs) before failing")


@dataclass(frozen=True)
class PhysicsConfig:
    """Phantom geometry ranges, tissue conductivities, source and solver settings."""

    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    conductivity: ConductivityConfig = field(default_factory=ConductivityConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)


# ---- model: operator backbones ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    """Geometry encoder: conductivity tensor (S/m) -> feature volume shared by both backbones."""

    kind: Literal["pointwise", "conv"] = "pointwise"  # conv: 3x3x3 voxel kernels (not resolution-invariant)
    channels: int = spec(16, ge=1, doc="output feature channels")
    hidden: int = spec(32, ge=1, doc="hidden channels of the pointwise MLP")
    layers: int = spec(2, ge=1, doc="layers of the encoder MLP")
    sigma_ref: float = spec(0.1, gt=0, doc="S/m, reference of the log-conductivity log(sigma / sigma_ref)")


@dataclass(frozen=True)
class ConditioningConfig:
    """Spacing conditioner: (dx, dy, dz) -> FiLM scale and shift of the backbone latent."""

    enabled: bool = True
    hidden: int = spec(32, ge=1)
    reference_spacing: tuple[float, float, float] = spec((2e-3, 2e-3, 2e-3), gt=0, doc="m, (dx, dy, dz)")


@dataclass(frozen=True)
class UNetConfig:
    """3D UNet: levels (depth), channels at the first level (base, doubled per level), GroupNorm groups."""

    base: int = spec(16, ge=1)
    depth: int = spec(3, ge=1)
    groups: int = spec(4, ge=1, doc="GroupNorm groups; must divide base")


@dataclass(frozen=True)
class FNOConfig:
    """3D FNO: width, kept modes (D, H, W-half-spectrum), Fourier layers and domain padding fraction."""

    width: int = spec(16, ge=1)
    modes: tuple[int, int, int] = spec((8, 8, 8), ge=1, doc="kept modes along (D, H, W)")
    layers: int = spec(4, ge=1)
    padding: float = spec(1 / 6, ge=0, lt=1, doc="domain padding per side as a fraction of the grid")
    lifting_ratio: int = spec(2, ge=1, doc="hidden channels of the lifting MLP / width")
    projection_ratio: int = spec(2, ge=1, doc="hidden channels of the projection MLP / width")


@dataclass(frozen=True)
class PriorConfig:
    """Analytic prior: the free-space potential of the sample's poles, an input channel and the output's base."""

    kind: Literal["free_space", "none"] = "free_space"
    core_m: float = spec(2e-3, gt=0, doc="m; Gaussian core that keeps the prior finite at each pole")


@dataclass(frozen=True)
class ModelConfig:
    """The operator (sigma, f, X, Y, Z, spacing) -> Phi: backbone choice and every size."""

    backbone: Literal["unet", "fno"] = "fno"
    prior: PriorConfig = field(default_factory=PriorConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    fno: FNOConfig = field(default_factory=FNOConfig)


# ---- train / loss / log: operator training --------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and loop settings shared by train_unet and train_fno."""

    epochs: int = spec(10, ge=1)
    batch_size: int = spec(1, ge=1)
    lr: float = spec(1e-3, gt=0, le=1)
    weight_decay: float = spec(1e-4, ge=0)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    warmup_steps: int = spec(0, ge=0, doc="linear warm-up steps before the schedule")
    step_size: int = spec(10, ge=1, doc="epochs between decays (step)")
    gamma: float = spec(0.5, gt=0, le=1, doc="decay factor (step)")
    min_lr_ratio: float = spec(0.01, ge=0, le=1, doc="final lr / lr (cosine)")
    grad_clip: float = spec(1.0, ge=0, doc="max global gradient norm; 0 = off")
    workers: int = spec(0, ge=0, doc="DataLoader worker processes")
    amp: bool = True
    compile: bool = False
    max_train_samples: int = spec(0, ge=0, doc="use only the first N training samples; 0 = all")
    augment: bool = True  # random reflections, x <-> y swap and sign of each training item (exact symmetries)


@dataclass(frozen=True)
class LossConfig:
    """Masked MSE (muscle minus a sphere around every source pole) plus gradient consistency."""

    singularity_radius: float = spec(3.0, ge=0, doc="base-grid voxels around each source pole")
    lambda_mse: float = spec(1.0, ge=0)
    lambda_grad: float = spec(0.1, ge=0)
    region: Literal["muscle", "tissue"] = "muscle"
    muscle_sigma: tuple[float, float, float, float, float, float] = (0.2455, 0.2455, 1.2275, 0.0, 0.0, 0.0)
    muscle_rtol: float = spec(1e-3, gt=0, lt=1, doc="eigenvalue match tolerance of the muscle mask")


@dataclass(frozen=True)
class LogConfig:
    """TensorBoard logging cadence and where runs go."""

    root: str = "experiments"
    norms_every: int = spec(10, ge=1, doc="steps")
    vis_every: int = spec(10, ge=1, doc="epochs")
    progress: bool = True


@dataclass(frozen=True)
class EvalConfig:
    """Zero-shot evaluation at base and 2x resolution (the eval_sr stage)."""

    splits: tuple[str, str] = ("test", "test_2x")
    figures: int = spec(2, ge=0, doc="error-map figures per split")
    timing_repeats: int = spec(1, ge=1)


# ---- mpm: the MLS-MPM corpus ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MPMSceneConfig:
    """Grid, time step, elasticity, gravity, densities and recording cadence of one MPM scene.

    The domain is the unit square; ``dx = 1 / n_grid``; particle volume ``V_p = (particle_size dx)^2``;
    particle mass ``m_p = density[material] V_p``; Lame constants ``mu_0 = E / (2 (1 + nu))``,
    ``lambda_0 = E nu / ((1 + nu) (1 - 2 nu))``.
    """

    n_grid: int = spec(128, ge=8, doc="grid nodes per side of the unit square")
    dt: float = spec(1e-4, gt=0, doc="substep, s")
    E: float = spec(5e3, gt=0, doc="Young's modulus")
    nu: float = spec(0.2, ge=0, lt=0.5, doc="Poisson's ratio")
    gravity: tuple[float, float] = spec((0.0, -30.0), doc="m/s^2 (x, y)")
    density: tuple[float, float, float] = spec((1.0, 1.0, 1.0), gt=0, doc="liquid, jelly, snow")
    particle_size: float = spec(0.5, gt=0, doc="particle side in cells: V_p = (particle_size dx)^2")
    substeps: int = spec(20, ge=1, doc="substeps per stored frame")
    particles: int = spec(3000, ge=1, doc="particles per block (mpm128) or per disc (discs_3types)")
    max_speed: float = spec(2.0, ge=0, doc="discs_3types: initial disc velocity ~ U(-max_speed, max_speed)^2")


@dataclass(frozen=True)
class MPM128SceneConfig(MPMSceneConfig):
    """Taichi's mpm128: three 0.2 x 0.2 blocks (liquid, jelly, snow) falling into the box."""


@dataclass(frozen=True)
class DiscsSceneConfig(MPMSceneConfig):
    """discs_3types: nine discs of radius 0.075 on a 3 x 3 layout, three per material, random velocities."""

    dt: float = spec(7.5e-5, gt=0, doc="substep, s")
    E: float = spec(1e3, gt=0, doc="Young's modulus")
    gravity: tuple[float, float] = spec((0.0, -50.0), doc="m/s^2 (x, y)")
    density: tuple[float, float, float] = spec((1.0, 0.5, 0.25), gt=0, doc="liquid, jelly, snow")
    particles: int = spec(1000, ge=1, doc="particles per disc")


@dataclass(frozen=True)
class MPMConfig:
    """Scene, constants, engine and recording of the 2D MLS-MPM simulation (fieldlab.mpm.simulate)."""

    scene: Literal["mpm128", "discs_3types"] = "discs_3types"
    frames: int = spec(200, ge=1, doc="stored frames, the initial state included")
    root: str = "data/mpm"
    # material laws shared by the scenes (Taichi mpm128)
    hardening: float = spec(10.0, ge=0, doc="xi in h = exp(xi (1 - Jp))")
    h_min: float = spec(0.1, gt=0, doc="lower clamp of h")
    h_max: float = spec(5.0, gt=0, doc="upper clamp of h")
    jelly_h: float = spec(0.3, gt=0, doc="fixed hardening of jelly")
    snow_clamp: tuple[float, float] = spec((0.975, 1.0045), gt=0, doc="snow singular values [1 - theta_c, 1 + theta_s]")
    wall_cells: int = spec(3, ge=0, doc="wall band in nodes (0: no walls)")
    # engine
    device: str = spec("cpu", doc="Warp device: cpu, cuda, cuda:N or auto (cuda when present)")
    threads: int = spec(2, ge=0, doc="CPU threads (particle chunks with private grids); 0 = all cores")
    mpm128: MPM128SceneConfig = field(default_factory=MPM128SceneConfig)
    discs_3types: DiscsSceneConfig = field(default_factory=DiscsSceneConfig)

    def __post_init__(self) -> None:
        lo, hi = self.snow_clamp
        if not lo <= 1.0 <= hi:
            raise ConfigError(f"mpm.snow_clamp = {list(self.snow_clamp)!r}: expected [lo, hi] with lo <= 1 <= hi")
        if self.h_min > self.h_max:
            raise ConfigError(f"mpm.h_min = {self.h_min!r} > mpm.h_max = {self.h_max!r}: expected h_min <= h_max")

    @property
    def scene_config(self) -> MPMSceneConfig:
        """Constants of the selected scene."""
        return getattr(self, self.scene)


# ---- inr: one implicit-neural-representation fit ----------------------------------------------------------------
@dataclass(frozen=True)
class NGPConfig:
    """Hash-grid encoding (Instant-NGP) and its MLP, used when ``inr.model = ngp``."""

    levels: int = spec(16, ge=1, le=32)
    features: int = spec(2, ge=1, le=16, doc="features per level")
    log2_table_size: int = spec(19, ge=4, le=26, doc="T = 2**log2_table_size entries per hashed level")
    base_resolution: int = spec(16, ge=1)
    growth: float = spec(1.5, ge=1.0, le=4.0, doc="level l has resolution floor(base_resolution * growth**l)")
    mlp_width: int = spec(64, ge=1)
    mlp_layers: int = spec(2, ge=0, le=16, doc="hidden ReLU layers")
    table_lr_factor: float = spec(5.0, gt=0, le=1000, doc="hash-table learning rate = inr.lr * table_lr_factor")


@dataclass(frozen=True)
class INRConfig:
    """One INR fit on one MPM field (the inr_block stage)."""

    model: Literal["siren_t", "siren_id", "siren_txy", "ngp"] = "ngp"
    field_name: Literal["F", "Jp", "S", "C"] = "Jp"
    scene: str = "discs_3types"
    data_root: str = "data/mpm"
    n_training_frames: int = spec(48, ge=1)
    frame_start: int = spec(0, ge=0)
    hidden_features: int = spec(256, ge=1, le=8192)
    hidden_layers: int = spec(3, ge=1, le=16)
    omega: float = spec(30.0, gt=0, le=1000)
    learn_omega: bool = False
    omega_lr: float = spec(1e-4, gt=0, le=1)
    lr: float = spec(1e-3, gt=0, le=1)
    batch_size: int = spec(2, ge=1, doc="frames per step")
    total_steps: int = spec(1000, ge=1)
    grad_clip: float = spec(0.0, ge=0, doc="max gradient norm; 0 = off")
    t_period: float = spec(1.0, gt=0, doc="time input divided by this (larger = slower variation)")
    xy_period: float = spec(1.0, gt=0, doc="position/id input divided by this")
    device: str = "auto"
    ngp: NGPConfig = field(default_factory=NGPConfig)


# ---- explore: the UCB exploration loop --------------------------------------------------------------------------
@dataclass(frozen=True)
class ExploreRanges:
    """Allowed ranges of the ``inr.*`` values the agents may set (inclusive bounds)."""

    lr: tuple[float, float] = spec((1e-7, 1e-3), gt=0)
    batch_size: tuple[int, int] = spec((1, 32), ge=1)
    hidden_features: tuple[int, int] = spec((64, 2048), ge=1)
    hidden_layers: tuple[int, int] = spec((2, 6), ge=1)
    omega: tuple[float, float] = spec((1.0, 100.0), gt=0)
    total_steps: tuple[int, int] = spec((1000, 200000), ge=1, doc="a tiny study lowers this range")
    t_period: tuple[float, float] = spec((0.01, 100.0), gt=0)
    xy_period: tuple[float, float] = spec((0.01, 100.0), gt=0)
    n_training_frames: tuple[int, int] = spec((2, 100000), ge=1)


@dataclass(frozen=True)
class ExploreConfig:
    """Blocks, iterations, UCB constant, agent, time budget and mutation ranges of the exploration loop."""

    ucb_c: float = spec(1.414, ge=0, doc="UCB = R2 + c sqrt(ln N / n)")
    agent: Literal["rule", "command"] = "rule"
    agent_command: str = spec("", doc="shell command of the command agent; prompt on stdin, run in the workspace")
    agent_timeout_s: float = spec(900.0, gt=0)
    agent_may_edit: tuple[str, ...] = spec((), doc="source files the command agent may edit (empty: none)")
    time_budget_s: float = spec(600.0, gt=0, doc="wall time allowed per fit; total_steps is scaled to fit it")
    n_blocks: int = spec(2, ge=1)
    n_iter_block: int = spec(8, ge=1)
    next_block: Literal["field", "frames", "none"] = spec("field", doc="rotate Jp->F->S->C, raise frames, or keep")
    frames_schedule: tuple[int, ...] = spec((48, 100, 200, 500), ge=1)
    stage: str = spec("inr_block", doc="DVC stage run by `dvc exp run`")
    stage_cmd: str = spec("python stages/inr_block.py", doc="command of the stage for --no-dvc (gets --params)")
    metrics_file: str = "metrics/inr.json"
    name: str = spec("inr", doc="prefix of <name>_analysis.md and <name>_memory.md")
    ranges: ExploreRanges = field(default_factory=ExploreRanges)


# ---- root -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """The whole of params.yaml."""

    seed: int = spec(0, ge=0)
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mpm: MPMConfig = field(default_factory=MPMConfig)
    inr: INRConfig = field(default_factory=INRConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)


# ----------------------------------------------------------------------------------------------------------------
# Loading and validation.
# ----------------------------------------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    """Human-readable name of an annotation for error messages."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _fail(source: str, key: str, value: Any, expected: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: {key} = {value!r}: expected {expected}")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in canonical form (tuples, floats)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            _fail(source, key, value, "a mapping of keys")
        return _build(tp, value, key, source)
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(source, key, value, _describe(tp))
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        _fail(source, key, value, _describe(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            _fail(source, key, value, _describe(tp))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(source, key, value, _describe(tp))
        return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            _fail(source, key, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(source, key, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(source, key, value, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(source, key, value, "a string")
        return value
    if tp is Any:
        return value
    raise TypeError(f"config annotation {tp!r} of {key} is not supported")  # a bug in this module


def _check_bounds(value: Any, meta: Mapping[str, Any], key: str, source: str) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        for name, ok, words in (
            ("ge", lambda x, b: x >= b, ">="),
            ("gt", lambda x, b: x > b, ">"),
            ("le", lambda x, b: x <= b, "<="),
            ("lt", lambda x, b: x < b, "<"),
        ):
            bound = meta.get(name)
            if bound is not None and not ok(v, bound):
                expected = f"{'a value' if len(values) == 1 else 'values'} {words} {bound}"
                _fail(source, key, value, expected)


def _build(cls: type[T], data: Mapping[str, Any], prefix: str, source: str) -> T:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in data:
        if name not in known:
            dotted = f"{prefix}.{name}" if prefix else str(name)
            _fail(source, dotted, data[name], "no such key; allowed: " + ", ".join(sorted(known)))
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            continue
        dotted = f"{prefix}.{name}" if prefix else name
        value = _coerce(data[name], hints[name], dotted, source)
        _check_bounds(value, f.metadata, dotted, source)
        kwargs[name] = value
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], parsed YAML value), as ``dvc exp run -S`` does."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY.SUBKEY=VALUE (e.g. model.backbone=unet)")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``a.b=value`` override set (intermediate mappings created)."""
    out: dict[str, Any] = copy.deepcopy(dict(raw)) if raw else {}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return out


def config_from_dict(raw: Mapping[str, Any], source: str = "params") -> Config:
    """Validate a plain mapping (as parsed from YAML) into a :class:`Config`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return _build(Config, raw, "", source)


def read_params(path: str | Path) -> dict[str, Any]:
    """Parse a params file into a mapping, with one-line errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Config:
    """Load, override and validate ``params.yaml``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "params.yaml"
    >>> _ = p.write_text("model:\\n  backbone: fno\\n")
    >>> load_config(p, ["model.backbone=unet"]).model.backbone
    'unet'
    """
    return config_from_dict(apply_overrides(read_params(path), overrides), source=str(path))


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a config or a section, for YAML/JSON dumps and TensorBoard."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def stage_parser(description: str) -> argparse.ArgumentParser:
    """Argument parser shared by stage scripts: ``--params FILE`` and trailing ``KEY=VALUE`` overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")
    return parser
