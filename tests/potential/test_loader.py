"""The corpus Dataset: shapes, coordinate channels, scalings fitted on train, masks at 1x and 2x."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from support_train import BASE_GRID, write_corpus

from fieldlab.errors import InputError
from fieldlab.potential.data.loader import PotentialDataset, coordinate_grid, split_files
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.schema import load_sample


@pytest.fixture
def root(tmp_path):
    return write_corpus(tmp_path / "potential")


def test_coordinate_channels_are_x_y_z_at_voxel_centres():
    c = coordinate_grid((4, 3, 2), (-1.0, 1.0))
    assert c.shape == (3, 4, 3, 2)
    np.testing.assert_allclose(c[0, 0, 0].numpy(), [-0.5, 0.5])  # X varies along W
    np.testing.assert_allclose(c[1, 0, :, 0].numpy(), [-2 / 3, 0.0, 2 / 3])  # Y along H
    np.testing.assert_allclose(c[2, :, 0, 0].numpy(), [-0.75, -0.25, 0.25, 0.75])  # Z along D


def test_scaler_is_fitted_on_train_and_round_trips(root):
    files = split_files(root, "train")
    samples = [load_sample(f) for f in files]
    sc = FieldScaler.fit(samples)
    assert sc.f_scale == pytest.approx(np.mean([np.abs(s.source).max() for s in samples]), rel=1e-6)
    u = np.concatenate([s.u[s.mask].astype(np.float64) for s in samples])
    assert sc.u_scale == pytest.approx(np.sqrt(np.mean(u**2)), rel=1e-6)
    assert FieldScaler.from_dict(sc.to_dict()) == sc
    x = torch.randn(5)
    torch.testing.assert_close(sc.unscale_potential(sc.scale_potential(x)), x)
    with pytest.raises(InputError, match="u_scale"):
        FieldScaler(1.0, 0.0)


def test_item_shapes_units_and_masks(root):
    files = split_files(root, "train")
    sc = FieldScaler(f_scale=2.0, u_scale=4.0)
    ds = PotentialDataset(files, sc, singularity_radius=1.0)
    item, raw = ds[0], load_sample(files[0])
    d, h, w = BASE_GRID
    shapes = {"sigma": (6, d, h, w), "f": (1, d, h, w), "coords": (3, d, h, w), "spacing": (3,), "phi": (1, d, h, w)}
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape, key
    np.testing.assert_allclose(item["phi"][0].numpy(), raw.u / 4.0, rtol=1e-6)
    np.testing.assert_allclose(item["f"][0].numpy(), raw.source / 2.0, rtol=1e-6)
    np.testing.assert_allclose(item["sigma"][2].numpy(), raw.sigma[..., 2])
    mask = item["mask"][0]
    assert not mask[:, 0, :].any() and not mask[:, :, -1].any()  # the fat shell is not muscle
    for pole in raw.source_index:
        assert not mask[tuple(pole)]
    assert mask.sum() > 0


def test_2x_ball_covers_the_same_physical_region(root):
    sc = FieldScaler(1.0, 1.0)
    base = PotentialDataset(split_files(root, "test"), sc, singularity_radius=1.0, region="tissue")
    ref = base.sample(0).spacing.tolist()
    fine = PotentialDataset(
        split_files(root, "test_2x"), sc, singularity_radius=1.0, region="tissue", reference_spacing=ref
    )
    n_base = int((~base[0]["mask"]).sum())
    n_fine = int((~fine[0]["mask"]).sum())
    assert n_base >= 7  # at least one full radius-1 ball (7 voxels)
    assert n_fine > 4 * n_base  # radius 2 voxels at 2x: 33 per ball vs 7, i.e. ~8 / 2**3 * 7 of the same volume


def test_muscle_sigma_that_matches_no_voxel_is_refused_naming_the_file(root):
    """The corpus's muscle is diag(0.2455, 0.2455, 1.2275); a loss tensor of other eigenvalues matches no voxel, and
    an empty mask would score any prediction as perfect: the item is refused, naming the file, the rule and the
    tensor that the voxels labelled muscle carry."""
    files = split_files(root, "train")
    ds = PotentialDataset(files, FieldScaler(1.0, 1.0), singularity_radius=1.0, muscle_sigma=(0.3, 0.3, 1.5, 0, 0, 0))
    with pytest.raises(InputError) as info:
        ds[0]
    message = str(info.value)
    assert message.startswith(f"{files[0]}: the loss mask holds 0 of 288 tissue voxels")
    assert "loss.muscle_sigma = [0.3, 0.3, 1.5, 0, 0, 0]" in message
    assert "labelled muscle carry [0.2455, 0.2455, 1.2275, 0, 0, 0]" in message and "\n" not in message


def test_source_balls_that_cover_the_tissue_are_refused(root):
    """Balls of radius 10 base voxels around the poles cover the whole 8 x 6 x 6 grid: nothing is left to score."""
    files = split_files(root, "val")
    ds = PotentialDataset(files, FieldScaler(1.0, 1.0), singularity_radius=10.0, region="tissue")
    expected = rf"^{re.escape(str(files[0]))}: the loss mask holds 0 of .*loss\.singularity_radius = 10"
    with pytest.raises(InputError, match=expected):
        ds[0]


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"no \.npz samples"):
        split_files(tmp_path, "train")
