"""Schemas of the potential study: corpus (``data``), ``physics``, ``model``, ``train``, ``loss``, ``log``, ``eval``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fieldlab.config.core import check_ranges, range_spec, spec
from fieldlab.errors import ConfigError

#: Muscle conductivity (S/m) as channels (xx, yy, zz, xy, xz, yz): 1:5 anisotropy, stiff along the fibres (z);
#: layered-cylinder EMG models use 0.1 / 0.5 S/m. The default of ``physics.conductivity.muscle`` and of
#: ``loss.muscle_sigma``, which must agree (:func:`check_loss_muscle`).
MUSCLE_SIGMA = (0.2455, 0.2455, 1.2275, 0.0, 0.0, 0.0)


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
    # n_train / n_val / n_test count limbs; each limb gives sources_per_limb samples (one assembly and AMG setup).
    sources_per_limb: int = spec(1, ge=1, le=100, doc="bipolar sources solved per limb; 1 = one NNNN.npz per limb")
    test_2x: bool = True
    # Limbs of the out-of-distribution test split ood/ (one source each, base grid; shifts in physics.ood).
    n_ood: int = spec(0, ge=0, doc="out-of-distribution test limbs; 0 = no ood split")
    # The fine labels of the sub-grid model: the first limbs of train / val also solved at 2x (train_2x/, val_2x/).
    n_train_2x: int = spec(0, ge=0, doc="training limbs also solved at 2x (train_2x/); 0 = none")
    n_val_2x: int = spec(0, ge=0, doc="validation limbs also solved at 2x (val_2x/); 0 = none")
    ood_2x: bool = False
    # Test limbs at resolutions no model trains on (physics/resolutions.py): the first n_test_resolutions test limbs,
    # rasterised and solved afresh on each grid, in test_<name>/ (synthetic corpora only).
    test_resolutions: tuple[Literal["1.5x", "aniso"], ...] = ()
    n_test_resolutions: int = spec(5, ge=1, doc="test limbs solved at each of test_resolutions")


@dataclass(frozen=True)
class PhantomConfig:
    """Ranges of the limb geometry (metres); each sample draws every value uniformly from its range."""

    box_m: tuple[float, float, float] = spec((0.096, 0.096, 0.192), gt=0, doc="physical box (Lx, Ly, Lz)")
    radius_m: tuple[float, float] = range_spec((0.030, 0.042), gt=0, doc="outer limb radius at z = 0")
    ellipticity: tuple[float, float] = range_spec((0.0, 0.1), ge=0, doc="semi-axes R (1 +- e)")
    taper: tuple[float, float] = range_spec((-0.1, 0.1), doc="relative radius change from z = 0 to the box end")
    skin_m: tuple[float, float] = range_spec((0.001, 0.002), gt=0)
    fat_m: tuple[float, float] = range_spec((0.003, 0.006), gt=0)
    bones: tuple[int, int] = spec((1, 2), ge=1, le=2, doc="range of the number of bones")
    bone_radius_m: tuple[float, float] = range_spec((0.006, 0.009), gt=0)
    subsamples: int = spec(4, ge=1, le=8, doc="partial-volume sub-samples per axis per base voxel")

    def __post_init__(self) -> None:
        check_ranges(self, "physics.phantom")
        if self.bones[0] > self.bones[1]:
            raise ConfigError(f"params: physics.phantom.bones = {list(self.bones)}: expected [low, high], low <= high")


@dataclass(frozen=True)
class ConductivityConfig:
    """Tissue conductivities (S/m); muscle is the full tensor (xx, yy, zz, xy, xz, yz), the others isotropic."""

    muscle: tuple[float, float, float, float, float, float] = MUSCLE_SIGMA  # see MUSCLE_SIGMA
    # Skin: reported values span 0.1-1 S/m (dry to wet); 0.5 is mid-range.
    skin: float = spec(0.5, gt=0)
    # Fat 0.04 S/m and cortical bone 0.02 S/m (Gabriel et al. 1996; layered EMG models, e.g. Lowery et al. 2002).
    fat: float = spec(0.04, gt=0)
    bone: float = spec(0.02, gt=0)
    fibre_tilt_deg: tuple[float, float] = range_spec((0.0, 0.0), ge=0, doc="fibre tilt from z; 0 = diagonal tensor")

    def __post_init__(self) -> None:
        check_ranges(self, "physics.conductivity")


@dataclass(frozen=True)
class SourceConfig:
    """Bipolar current source: two Gaussian poles of fixed physical width in the muscle."""

    current_a: float = spec(1e-3, gt=0, doc="current of each pole (A)")
    width_m: float = spec(0.002, gt=0, doc="Gaussian standard deviation of each pole")
    separation_m: tuple[float, float] = range_spec((0.015, 0.04), gt=0, doc="distance between the poles")
    margin_m: float = spec(0.004, ge=0, doc="least distance of a pole from fat, bone and the box ends")

    def __post_init__(self) -> None:
        check_ranges(self, "physics.source")


@dataclass(frozen=True)
class SolverConfig:
    """Multigrid-preconditioned CG on the Q1 finite-element system."""

    tol: float = spec(1e-8, gt=0, lt=1, doc="true relative residual ||b - A u|| / ||b||")
    maxiter: int = spec(300, ge=1)
    # fmg / mf: matrix-free multigrid-CG on the 27-point stencils (numba), from full multigrid / from zero; gmg:
    # geometric multigrid of the assembled matrix (trilinear prolongation, Galerkin coarse operators); sa / rs:
    # pyamg's algebraic multigrid. The others follow as fallbacks in the order gmg, sa, rs.
    method: Literal["fmg", "mf", "gmg", "sa", "rs"] = "fmg"
    attempts: int = spec(3, ge=1, doc="hierarchies tried (the method, then the others of gmg / sa / rs) before failing")
    # SA prolongation smoother: jacobi (pyamg's default) or energy (energy minimisation: cheaper setup and fewer CG
    # iterations on this system); energy, like data.sources_per_limb > 1, solves through one shared hierarchy per limb.
    prolongation: Literal["jacobi", "energy"] = "jacobi"


@dataclass(frozen=True)
class OODConfig:
    """Ranges of the out-of-distribution test split (``data.n_ood`` limbs). Limb ``i`` is drawn from the training
    ranges with one of them replaced, in turn (``i mod 4``): thicker fat, more elliptic sections, closer bipoles, one
    large bone. Each range must lie outside its training range (:func:`check_ood`)."""

    fat_m: tuple[float, float] = range_spec((0.007, 0.010), gt=0, doc="thick fat (training: physics.phantom.fat_m)")
    ellipticity: tuple[float, float] = range_spec((0.15, 0.25), ge=0, doc="elliptic sections (physics.phantom)")
    separation_m: tuple[float, float] = range_spec((0.008, 0.012), gt=0, doc="close bipoles (physics.source)")
    bone_radius_m: tuple[float, float] = range_spec((0.010, 0.012), gt=0, doc="one large bone (physics.phantom)")

    def __post_init__(self) -> None:
        check_ranges(self, "physics.ood")
        if self.ellipticity[1] >= 1:
            raise ConfigError(f"params: physics.ood.ellipticity = {list(self.ellipticity)}: expected values below 1")


@dataclass(frozen=True)
class PhysicsConfig:
    """Phantom geometry ranges, tissue conductivities, source and solver settings."""

    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    conductivity: ConductivityConfig = field(default_factory=ConductivityConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    ood: OODConfig = field(default_factory=OODConfig)

    def __post_init__(self) -> None:
        check_ood(self)


def check_ood(physics: PhysicsConfig) -> None:
    """Require every ``physics.ood`` range to lie outside (not overlap) its training range."""
    trained = {
        "fat_m": ("physics.phantom.fat_m", physics.phantom.fat_m),
        "ellipticity": ("physics.phantom.ellipticity", physics.phantom.ellipticity),
        "separation_m": ("physics.source.separation_m", physics.source.separation_m),
        "bone_radius_m": ("physics.phantom.bone_radius_m", physics.phantom.bone_radius_m),
    }
    for key, (name, (lo, hi)) in trained.items():
        a, b = getattr(physics.ood, key)
        if a <= hi and b >= lo:
            raise ConfigError(
                f"params: physics.ood.{key} = {[a, b]} overlaps {name} = {[lo, hi]}; expected a range outside "
                "the training range"
            )


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
    # anchored: FiLM(s) - FiLM(0), exactly the identity at the reference spacing (false: a learned constant there,
    # the conditioner of checkpoints that predate the key)
    anchored: bool = False


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
    """Physics prior, an input channel and the output's base: the free-space potential of the sample's poles
    (free_space), the sample restricted to a coarse grid and solved with the FEM (coarse_fem, cached by the priors
    stage under ``root``), or none."""

    kind: Literal["free_space", "coarse_fem", "none"] = "free_space"
    core_m: float = spec(2e-3, gt=0, doc="m; Gaussian core that keeps the prior finite at each pole")
    coarse_spacing_m: float = spec(4e-3, gt=0, doc="m; cell size of the coarse_fem grid, a whole number of voxels")
    root: str = "data/priors"  # the priors stage writes <root>/<split>/<sample file name> (coarse_fem)


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
    conditioning_lr_factor: float = spec(1.0, gt=0, doc="the spacing FiLM's learning rate / lr (a new module)")


@dataclass(frozen=True)
class LossConfig:
    """Masked MSE (muscle minus a sphere around every source pole) plus gradient consistency."""

    singularity_radius: float = spec(3.0, ge=0, doc="base-grid voxels around each source pole")
    lambda_mse: float = spec(1.0, ge=0)
    lambda_grad: float = spec(0.1, ge=0)
    region: Literal["muscle", "tissue"] = "muscle"
    # The corpus's muscle tensor: physics.conductivity.muscle for a synthetic corpus (checked on load).
    muscle_sigma: tuple[float, float, float, float, float, float] = MUSCLE_SIGMA
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
    error_estimate: bool = True  # an a-posteriori error estimate of every prediction (potential/estimate.py)
    baseline_spacings_m: tuple[float, ...] = spec(
        (0.008, 0.006, 0.004, 0.003), gt=0, doc="m; the FEM on these coarser grids is the classical front (empty: none)"
    )
    refine_sweeps: int = spec(
        32, ge=0, doc="symmetric Gauss-Seidel sweeps of the sample's own FEM system after the operator (0: none)"
    )
    twogrid_sweeps: tuple[int, ...] = spec(
        (32, 64, 128), ge=1, doc="sweeps of the classical two-grid baseline: the coarse_fem prior, then these sweeps"
    )
    rival_iterations: tuple[int, ...] = spec(
        (1, 2, 3, 4, 5, 6, 8), ge=1, doc="multigrid-CG on the sample's system stopped after these iterations ([]: none)"
    )
    # preconditioners of that rival (potential/rivals.py): mf (multigrid-CG on stencils, the corpus's solver),
    # geometric MG on the assembled matrix, pyamg SA with Jacobi / energy prolongation
    rival_methods: tuple[Literal["mf", "fmg", "gmg", "sa_jacobi", "sa_energy"], ...] = ("mf", "fmg", "gmg", "sa_energy")
    rival_repeats: int = spec(3, ge=1, doc="timed runs of each rival per sample, interleaved; the median is reported")
    # the preconditioners of that rival at 2x (SA's set-up on the 1 mm system costs ~4x gmg's and is dominated)
    rival_methods_x2: tuple[Literal["mf", "fmg", "gmg", "sa_jacobi", "sa_energy"], ...] = ("mf", "fmg", "gmg")
    nested_iterations: tuple[int, ...] = spec(
        (0, 1, 2, 3),
        ge=0,
        doc="nested iteration at 2x: the training-grid solve prolonged, then these fine CG iterations",
    )
    rivals_file: str = "data/rivals/rivals.json"  # the eval_rivals stage's output (keep in sync with dvc.yaml)
    metrics_file: str = "metrics/eval_sr.json"  # the eval_sr stage's output, whose 2x verdict predict follows
    yardstick_iterations: int = spec(
        2,
        ge=1,
        doc="eval_sr re-times multigrid-CG on stencils stopped after these iterations against the cached rivals",
    )
    twogrid_cycles: tuple[int, ...] = spec(
        (1, 2, 4, 8), ge=1, doc="two-grid cycles (smoothing + exact coarse correction) of that rival ([]: none)"
    )
    twogrid_smoothing: int = spec(1, ge=0, doc="symmetric Gauss-Seidel sweeps before and after each coarse correction")
    twogrid_coarse_m: float = spec(4e-3, gt=0, doc="m; coarse cell of the two-grid cycle, a whole number of voxels")


@dataclass(frozen=True)
class SubgridConfig:
    """The learned sub-grid correction (``models.subgrid``): fine accuracy from a coarse solve and the fine arrays."""

    enabled: bool = False  # train it (train_subgrid), score it in eval_sr at 2x (x2_subgrid) and make it the 2x default
    root: str = "experiments/subgrid"
    start_tol: float = spec(1e-2, gt=0, lt=1, doc="relative residual of the coarse start's multigrid-CG solve")
    precision: Literal["auto", "float32", "bfloat16"] = "auto"  # of the forward pass at prediction (core.device)
    sigma_ref: float = spec(0.1, gt=0, doc="S/m; inputs use log(sigma / sigma_ref)")
    base: int = spec(16, ge=1, doc="UNet channels at the first level")
    depth: int = spec(3, ge=1, le=6)
    groups: int = spec(4, ge=1)
    epochs: int = spec(20, ge=1, doc="at most this many epochs (training ends earlier on a plateau: stop_patience)")
    lr: float = spec(2e-3, gt=0)
    patience: int = spec(2, ge=1, doc="epochs without a new best validation error before the learning rate halves")
    stop_patience: int = spec(6, ge=1, doc="epochs without a new best validation error that end training")
    weight_decay: float = spec(0.0, ge=0)
    grad_clip: float = spec(1.0, ge=0, doc="max global gradient norm; 0 = off")
    augment: bool = True  # each item under a random exact symmetry of the box (data/symmetry.py)
    max_train_samples: int = spec(0, ge=0, doc="train on the first N fine limbs only (a learning curve); 0 = all")
    steps_per_epoch: int = spec(80, ge=0, doc="training steps between validations; 0 = one pass over the limbs")
    error_head: bool = True  # a second head estimating the corrector's own error (models/subgrid.py)


@dataclass(frozen=True)
class SpacingsConfig:
    """The operator trained across spacings (train_spacings): the seed model of ``backbone`` fine-tuned on base and
    fine limbs, batches of one spacing each, with the spacing conditioning on or (the ablation) off."""

    enabled: bool = False  # train it (train_spacings) and score it at every resolution in eval_sr (resolutions)
    backbone: Literal["fno", "unet"] = "fno"  # its seed: <log.root>/<backbone>/checkpoints/best.pt
    root: str = "experiments/spacings"
    conditioning: bool = (
        True  # the spacing FiLM (model.conditioning, new and near the identity) on; false: the ablation
    )
    base_limbs: int = spec(24, ge=0, doc="the first N limbs of train/ per epoch; 0 = all")
    fine_limbs: int = spec(8, ge=1, doc="the first N limbs of train_2x/ per epoch")
    val_fine_limbs: int = spec(4, ge=1, doc="the first N limbs of val_2x/ beside all of val/ for checkpoint selection")
    epochs: int = spec(2, ge=1)
    lr: float = spec(5e-4, gt=0, le=1)
    min_lr_ratio: float = spec(0.1, ge=0, le=1, doc="final lr / lr (cosine over the run)")
    film_lr_factor: float = spec(1.0, gt=0, doc="the new spacing FiLM's learning rate / lr")


# ---- checks across sections ----------------------------------------------------------------------------------------
def _eigenvalues(channels: tuple[float, ...]) -> np.ndarray:
    """Ascending eigenvalues of the symmetric tensor with channels (xx, yy, zz, xy, xz, yz)."""
    xx, yy, zz, xy, xz, yz = channels
    return np.linalg.eigvalsh(np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]], dtype=np.float64))


def check_loss_muscle(loss: LossConfig, conductivity: ConductivityConfig, data: DataConfig) -> None:
    """Require ``loss.muscle_sigma`` to be the muscle tensor of a synthetic corpus, ``physics.conductivity.muscle``.

    The loss mask keeps the voxels whose tensor has the sorted eigenvalues of ``loss.muscle_sigma`` within
    ``loss.muscle_rtol * max |lambda|`` (:func:`fieldlab.potential.data.masking.muscle_mask`); the same rule compares
    the two settings here, so that a tilted fibre (a rotated tensor, same eigenvalues) still agrees. Nothing is checked
    for ``loss.region = tissue`` or a ``raw`` corpus (whose tensors ``physics`` does not describe; the dataset
    refuses a mask that matches almost nothing).

    Raises
    ------
    ConfigError
        The eigenvalues differ by more than the tolerance.
    """
    if loss.region != "muscle" or data.source != "synthetic":
        return
    want, got = _eigenvalues(conductivity.muscle), _eigenvalues(loss.muscle_sigma)
    if np.any(np.abs(got - want) > loss.muscle_rtol * np.abs(got).max()):
        raise ConfigError(
            f"params: loss.muscle_sigma = {list(loss.muscle_sigma)} (eigenvalues {np.round(got, 6).tolist()}): "
            f"expected the eigenvalues {np.round(want, 6).tolist()} of physics.conductivity.muscle = "
            f"{list(conductivity.muscle)} within loss.muscle_rtol = {loss.muscle_rtol:g}, or the loss mask misses "
            "the corpus's muscle"
        )
