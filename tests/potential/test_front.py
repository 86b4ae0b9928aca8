"""The classical front: the corpus's own limbs solved on coarser grids, scored on the model's mask.

Independent truths:
- At the corpus's own spacing the front must rebuild the corpus sample: the same rasterisation (same sub-sample
  pitch), the same Q1 solve, and the Q1 field at a voxel centre is the mean of its 8 corners, which is how the
  solver reports centre values; in the corpus gauge (zero mean over tissue) the two agree to the solver tolerance.
- Refining the coarse grid lowers the error (8 cells per axis-unit -> 6 -> the base grid).
- Interpolation weights: each fine centre's weights sum to 1 and reproduce a linear function exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from fieldlab.config import Config, DataConfig, PhantomConfig, PhysicsConfig, SourceConfig
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import split_files
from fieldlab.potential.evaluation.classical.baselines import baseline_name, classical_front
from fieldlab.potential.metrics import field_relative_l2 as relative_l2
from fieldlab.potential.physics.corpus import generate_corpus
from fieldlab.potential.physics.fem.transfer import corner_weights, interpolate_corners

# 24x12x12 voxels of 8 mm on the default 96 x 96 x 192 mm box
DATA = DataConfig(grid=(24, 12, 12), n_train=1, n_val=1, n_test=2)
PHYSICS = PhysicsConfig(
    phantom=PhantomConfig(radius_m=(0.04, 0.042), subsamples=2),
    source=SourceConfig(width_m=0.008, separation_m=(0.03, 0.04), margin_m=0.006),
)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("front")
    generate_corpus(DATA, PHYSICS, seed=5, root=root, progress=False)
    return Config(data=DataConfig(**{**DATA.__dict__, "root": str(root)}), physics=PHYSICS)


def tissue_masks(files):
    from fieldlab.potential.schema import load_sample

    return [load_sample(f).mask for f in files]


def test_front_at_the_corpus_spacing_rebuilds_the_corpus(cfg):
    files = split_files(cfg.data.root, "test")
    front = classical_front(cfg, files, tissue_masks(files), (0.008,))
    assert front[baseline_name(0.008)]["rel_l2_max"] < 1e-5  # float32 storage, CG tolerance 1e-8


def test_front_error_falls_as_the_grid_refines(cfg):
    files = split_files(cfg.data.root, "test_2x")  # 4 mm truth
    front = classical_front(cfg, files, tissue_masks(files), (0.016, 0.012, 0.008))
    errors = [front[baseline_name(h)]["rel_l2"] for h in (0.016, 0.012, 0.008)]
    assert errors[0] > errors[1] > errors[2] > 0


def test_a_corpus_without_limbs_has_no_front(cfg, tmp_path):
    files = split_files(cfg.data.root, "test")
    raw = Config(data=DataConfig(root=str(tmp_path)), physics=PHYSICS)  # no manifest there
    assert classical_front(raw, files, tissue_masks(files), (0.008,)) == {}


@pytest.mark.parametrize(("n_coarse", "n_fine"), [(1, 2), (3, 6), (2, 3), (32, 48), (48, 96)])
def test_corner_weights_are_a_partition_of_unity_exact_on_lines(n_coarse, n_fine):
    w = corner_weights(n_coarse, n_fine)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-14)
    corners = np.linspace(0.0, 1.0, n_coarse + 1)  # x at the corners, box [0, 1]
    centres = (np.arange(n_fine) + 0.5) / n_fine
    np.testing.assert_allclose(w @ (3 * corners - 1), 3 * centres - 1, atol=1e-12)


def test_trilinear_interpolation_is_exact_for_trilinear_fields():
    def f(z, y, x):
        return 1 + 2 * z - y + 0.5 * x + 3 * z * y * x

    cz, cy, cx = (np.linspace(0, 1, n + 1) for n in (4, 3, 5))
    corners = f(*np.meshgrid(cz, cy, cx, indexing="ij"))
    shape = (7, 9, 4)
    fz, fy, fx = ((np.arange(n) + 0.5) / n for n in shape)
    np.testing.assert_allclose(interpolate_corners(corners, shape), f(*np.meshgrid(fz, fy, fx, indexing="ij")))


def test_relative_l2_over_an_empty_mask_or_a_zero_field_is_an_error():
    """A metric over an empty set is an error, not a number (nor NaN carried into a mean)."""
    with pytest.raises(InputError, match="empty mask or a zero field"):
        relative_l2(np.ones(4), np.ones(4), np.zeros(4, dtype=bool))
    with pytest.raises(InputError, match="empty mask or a zero field"):
        relative_l2(np.ones(4), np.zeros(4), np.ones(4, dtype=bool))
