"""Scalings between the physical corpus (A/m^3, volts) and the order-one numbers the operator sees.

The potential problem ``-div(sigma grad u) = f`` is linear in ``f``, so one scalar per field is enough:

    f_scaled   = f / f_scale          f_scale = mean over training samples of max |f|      (A/m^3)
    phi_scaled = u / u_scale          u_scale = sqrt(mean over training tissue voxels of u^2) (V)

Both scales are fitted on the training split only and stored in every checkpoint (:meth:`FieldScaler.to_dict`),
so evaluation at any resolution applies exactly the training transform. Conductivity is passed to the model in
S/m; the model scales it itself. A continuous source (fixed physical width, renormalised to the same current)
has the same density at 1x and 2x, so one ``f_scale`` serves both grids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from fieldlab.errors import InputError
from fieldlab.potential.schema import PotentialSample


@dataclass(frozen=True)
class FieldScaler:
    """Scalar scalings of the source and the potential, fitted on the training split.

    Parameters
    ----------
    f_scale
        Source scale in A/m^3 (> 0).
    u_scale
        Potential scale in volts (> 0).
    """

    f_scale: float
    u_scale: float

    def __post_init__(self) -> None:
        for name in ("f_scale", "u_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"FieldScaler.{name} = {value!r}: expected a finite positive number")

    @classmethod
    def fit(cls, samples: Iterable[PotentialSample]) -> FieldScaler:
        """Fit on training samples: ``f_scale = mean_s max|f_s|``, ``u_scale = RMS of u over tissue voxels``."""
        peaks: list[float] = []
        sq_sum = 0.0
        count = 0
        for s in samples:
            peaks.append(float(np.abs(s.source).max()))
            u = s.u[s.mask].astype(np.float64)
            sq_sum += float(np.sum(u * u))
            count += int(u.size)
        if not peaks or count == 0:
            raise InputError("FieldScaler.fit: no training samples with tissue voxels")
        return cls(f_scale=float(np.mean(peaks)), u_scale=math.sqrt(sq_sum / count))

    def scale_source(self, f: torch.Tensor) -> torch.Tensor:
        """A/m^3 -> model units: ``f / f_scale``."""
        return f / self.f_scale

    def scale_potential(self, u: torch.Tensor) -> torch.Tensor:
        """Volts -> model units: ``u / u_scale``."""
        return u / self.u_scale

    def unscale_potential(self, phi: torch.Tensor) -> torch.Tensor:
        """Model units -> volts: ``phi * u_scale``."""
        return phi * self.u_scale

    def to_dict(self) -> dict[str, float]:
        """Plain floats, safe for ``torch.load(weights_only=True)``."""
        return {"f_scale": float(self.f_scale), "u_scale": float(self.u_scale)}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> FieldScaler:
        try:
            return cls(f_scale=float(data["f_scale"]), u_scale=float(data["u_scale"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"transforms = {data!r}: expected a mapping with f_scale and u_scale") from None
