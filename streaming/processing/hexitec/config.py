"""The detector and the settings of its event chain.

- :data:`HEXITEC_SHAPE`, :data:`HEXITEC_ENERGY_EDGES_KEV`: the detector's pixels and the
  XCS-CT paper's energy bins.
- :data:`CHARGE_SHARING_MODES` and :class:`HexitecConfig`: threshold (keV or ADU),
  charge-sharing rule, energy binning; checked when built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streaming.errors import ConfigError

__all__ = ["CHARGE_SHARING_MODES", "HEXITEC_ENERGY_EDGES_KEV", "HEXITEC_SHAPE", "HexitecConfig"]

HEXITEC_SHAPE = (80, 80)
#: The HEXITEC's spectra: 0-200 keV in 1000 bins of 0.2 keV (the XCS-CT paper)
HEXITEC_ENERGY_EDGES_KEV = np.linspace(0.0, 200.0, 1001)
CHARGE_SHARING_MODES = ("sum", "discard", "off")


@dataclass(frozen=True, kw_only=True)
class HexitecConfig:
    """Settings of the event chain; checked when built.

    Attributes
    ----------
    threshold_kev : float or None
        A pixel is hit when its calibrated energy exceeds this, keV. Set it to None to
        threshold in ADU instead.
    threshold_adu : float or None
        A pixel is hit when ``ADC - pedestal`` exceeds this, ADU (only with
        ``threshold_kev=None``).
    charge_sharing : {"sum", "discard", "off"}
        ``"sum"``: events of up to ``max_event_pixels`` pixels are summed into their
        highest-energy pixel, larger ones dropped; ``"discard"``: only single-pixel events
        are kept; ``"off"``: every hit pixel is counted on its own.
    max_event_pixels : int
        Largest event kept by ``"sum"`` (2 in the XCS-CT paper).
    energy_min_kev, energy_max_kev : float
        Range of the spectra, keV.
    n_bins : int
        Equal-width energy bins over the range.
    """

    threshold_kev: float | None = 3.0
    threshold_adu: float | None = None
    charge_sharing: str = "sum"
    max_event_pixels: int = 2
    energy_min_kev: float = 0.0
    energy_max_kev: float = 200.0
    n_bins: int = 1000

    def __post_init__(self) -> None:
        if (self.threshold_kev is None) == (self.threshold_adu is None):
            raise ConfigError("hexitec.threshold_kev: give exactly one of threshold_kev and threshold_adu")
        for key in ("threshold_kev", "threshold_adu"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"hexitec.{key}: must be a finite number >= 0, got {value!r}")
        if self.charge_sharing not in CHARGE_SHARING_MODES:
            raise ConfigError(
                f"hexitec.charge_sharing: must be one of {', '.join(CHARGE_SHARING_MODES)}, got {self.charge_sharing!r}"
            )
        if not isinstance(self.max_event_pixels, int) or isinstance(self.max_event_pixels, bool):
            raise ConfigError(f"hexitec.max_event_pixels: must be an int, got {self.max_event_pixels!r}")
        if self.max_event_pixels < 1:
            raise ConfigError(f"hexitec.max_event_pixels: must be >= 1, got {self.max_event_pixels}")
        if not isinstance(self.n_bins, int) or isinstance(self.n_bins, bool) or self.n_bins < 1:
            raise ConfigError(f"hexitec.n_bins: must be an int >= 1, got {self.n_bins!r}")
        for key in ("energy_min_kev", "energy_max_kev"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ConfigError(f"hexitec.{key}: must be a finite number, got {value!r}")
        if self.energy_max_kev <= self.energy_min_kev:
            raise ConfigError(
                f"hexitec.energy_max_kev: must exceed energy_min_kev={self.energy_min_kev}, got {self.energy_max_kev}"
            )

    @property
    def energy_edges_kev(self) -> np.ndarray:
        """Bin edges of the spectra, keV, shape (n_bins + 1,)."""
        return np.linspace(self.energy_min_kev, self.energy_max_kev, self.n_bins + 1)
