"""Settings of the azimuthal reduction, validated when built.

- ``INTEGRATION_METHODS``: the reduction methods (defined in the package docstring).
- :class:`IntegrationConfig`: radial bins, reduction method, trim percentiles, corrections.
- ``_METHOD_CODES`` (private): each method's code in the numba kernels.
- ``_is_int``, ``_is_number`` (private): the validation helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streaming.errors import ConfigError

__all__ = ["INTEGRATION_METHODS", "IntegrationConfig"]

INTEGRATION_METHODS = ("trimmed_mean", "mean", "sigma_clip")
_METHOD_CODES = {name: code for code, name in enumerate(INTEGRATION_METHODS)}
_UNITS = ("2th_deg",)


@dataclass(frozen=True, kw_only=True)
class IntegrationConfig:
    """Settings of the azimuthal reduction; checked when built.

    Attributes
    ----------
    n_radial : int
        Number of radial bins.
    method : {"trimmed_mean", "mean", "sigma_clip"}
    percentiles : (float, float)
        Lower and upper percentiles of pixel weight kept by ``"trimmed_mean"``,
        0 <= low < high <= 100. (5, 95) is the XRD-CT paper's "10 % trimmed mean".
    polarization_factor : float or None
        pyFAI's polarisation factor (-1 .. 1, 0.99 for a horizontally polarised
        synchrotron beam); None for no polarisation correction.
    solid_angle : bool
        Correct for the solid angle of each pixel.
    unit : {"2th_deg"}
        Radial unit (scattering angle 2θ, degrees).
    radial_range_deg : (float, float) or None
        Range covered by the bins, in ``unit``; None for the range of the unmasked pixels.
    sigma_clip_threshold : float
        Clipping threshold k of ``"sigma_clip"`` (in σ), > 0.
    sigma_clip_max_iter : int
        Clipping cycles of ``"sigma_clip"``, >= 0.
    mask_negative : bool
        Skip pixels with negative values in each frame (Pilatus gap/defect markers).
    empty : float
        Value of bins with no kept pixel.
    """

    n_radial: int
    method: str = "trimmed_mean"
    percentiles: tuple[float, float] = (5.0, 95.0)
    polarization_factor: float | None = 0.99
    solid_angle: bool = True
    unit: str = "2th_deg"
    radial_range_deg: tuple[float, float] | None = None
    sigma_clip_threshold: float = 5.0
    sigma_clip_max_iter: int = 5
    mask_negative: bool = True
    empty: float = 0.0

    def __post_init__(self) -> None:
        if not _is_int(self.n_radial) or self.n_radial < 1:
            raise ConfigError(f"integration.n_radial: must be an int >= 1, got {self.n_radial!r}")
        if self.method not in INTEGRATION_METHODS:
            raise ConfigError(
                f"integration.method: must be one of {', '.join(INTEGRATION_METHODS)}, got {self.method!r}"
            )
        try:
            low, high = (float(p) for p in self.percentiles)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"integration.percentiles: must be two numbers, got {self.percentiles!r}") from exc
        if not (0.0 <= low < high <= 100.0):
            raise ConfigError(f"integration.percentiles: need 0 <= low < high <= 100, got {self.percentiles!r}")
        object.__setattr__(self, "percentiles", (low, high))
        factor = self.polarization_factor
        if factor is not None and not (_is_number(factor) and -1.0 <= factor <= 1.0):
            raise ConfigError(f"integration.polarization_factor: must be None or within [-1, 1], got {factor!r}")
        if self.unit not in _UNITS:
            raise ConfigError(f"integration.unit: must be one of {', '.join(_UNITS)}, got {self.unit!r}")
        if self.radial_range_deg is not None:
            try:
                start, stop = (float(v) for v in self.radial_range_deg)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"integration.radial_range_deg: must be None or two numbers, got {self.radial_range_deg!r}"
                ) from exc
            if not (math.isfinite(start) and math.isfinite(stop) and 0.0 <= start < stop):
                raise ConfigError(
                    f"integration.radial_range_deg: need finite 0 <= start < stop, got {self.radial_range_deg!r}"
                )
            object.__setattr__(self, "radial_range_deg", (start, stop))
        if not (_is_number(self.sigma_clip_threshold) and self.sigma_clip_threshold > 0):
            raise ConfigError(f"integration.sigma_clip_threshold: must be > 0, got {self.sigma_clip_threshold!r}")
        if not _is_int(self.sigma_clip_max_iter) or self.sigma_clip_max_iter < 0:
            raise ConfigError(f"integration.sigma_clip_max_iter: must be an int >= 0, got {self.sigma_clip_max_iter!r}")
        if not _is_number(self.empty):
            raise ConfigError(f"integration.empty: must be a number, got {self.empty!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )
