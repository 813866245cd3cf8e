"""Cross-section phantom of a wound cylindrical Li-ion cell (the paper's AAA NMC532/graphite).

- :class:`CylindricalCell`: the geometry, in metres: steel casing, a jelly roll wound as an
  Archimedean spiral around a hollow core, the layer stack of one turn (separator, anode,
  Cu, anode, separator, cathode, Al, cathode), inner turns without cathode (the paper:
  "the first two layers consist only of separator and anode-Cu") and an Al tab zone where
  the cathode coating is absent.
- :func:`material_fractions`: the area fraction of each material in every pixel of a grid,
  computed on a supersampled grid so that 10 µm foils are not lost in 20 µm pixels.
- :func:`lag_field`: 0..1, how late a place (de)lithiates: high next to the casing, the
  core and the tab (the paper's Fe-Al-Sep regions).

Images are (rows, columns) = (y, x) with the cell centred; lengths in m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MATERIALS", "CylindricalCell", "lag_field", "material_fractions"]

#: Materials of the phantom (anything else is void: air, electrolyte, the core).
MATERIALS = ("casing", "cu", "anode", "separator", "cathode", "al")
_STACK = ("separator", "anode", "cu", "anode", "separator", "cathode", "al", "cathode")
_SUBSAMPLE_PITCH_M = 4e-6  # the finest sampling of the layers: thinner than any foil


@dataclass(frozen=True, kw_only=True)
class CylindricalCell:
    """Geometry of the cell cross-section (defaults: a 10.17 mm AAA cell), metres."""

    diameter_m: float = 10.17e-3
    casing_thickness_m: float = 0.25e-3
    casing_gap_m: float = 0.05e-3
    core_radius_m: float = 0.6e-3
    separator_m: float = 20e-6
    anode_m: float = 65e-6
    cu_m: float = 10e-6
    cathode_m: float = 55e-6
    al_m: float = 15e-6
    anode_only_turns: float = 1.5
    tab_angle_deg: float = 30.0
    tab_width_m: float = 0.8e-3
    tab_radial_extent_m: float = 1.0e-3

    def __post_init__(self) -> None:
        if not 0 < self.core_radius_m < self.roll_outer_radius_m:
            raise ValueError(f"core_radius_m must lie inside the roll, got {self.core_radius_m}")

    @property
    def thicknesses_m(self) -> tuple[float, ...]:
        return tuple(getattr(self, f"{name}_m") for name in _STACK)

    @property
    def pitch_m(self) -> float:
        """Radial advance of the spiral per turn."""
        return sum(self.thicknesses_m)

    @property
    def roll_outer_radius_m(self) -> float:
        return self.diameter_m / 2 - self.casing_thickness_m - self.casing_gap_m

    @property
    def tab_radius_m(self) -> float:
        return self.core_radius_m + 0.6 * (self.roll_outer_radius_m - self.core_radius_m)


def _coordinates(n_px: int, pixel_size_m: float, sub: int, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """Subsample centres (y, x) of pixel rows ``rows``, metres from the grid centre."""
    axis = (np.arange(n_px * sub) + 0.5) / sub * pixel_size_m - n_px * pixel_size_m / 2
    return np.meshgrid(axis[rows.start * sub : rows.stop * sub], axis, indexing="ij")


def _labels(cell: CylindricalCell, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Material index (into MATERIALS; -1 for void) at points (y, x) in metres."""
    r = np.hypot(x, y)
    phi = np.mod(np.arctan2(y, x), 2 * np.pi)
    labels = np.full(r.shape, -1, np.int8)
    casing = (r <= cell.diameter_m / 2) & (r > cell.diameter_m / 2 - cell.casing_thickness_m)
    labels[casing] = MATERIALS.index("casing")
    roll = (r >= cell.core_radius_m) & (r <= cell.roll_outer_radius_m)
    along = r - cell.core_radius_m - cell.pitch_m * phi / (2 * np.pi)  # radial offset from the spiral start
    turn = np.floor(along / cell.pitch_m)
    u = along - turn * cell.pitch_m
    boundaries = np.cumsum(cell.thicknesses_m)
    layer = np.minimum(np.searchsorted(boundaries, u, side="right"), len(_STACK) - 1)
    stack_labels = np.array([MATERIALS.index(name) for name in _STACK], np.int8)
    material = stack_labels[layer]
    inner = (turn + phi / (2 * np.pi)) < cell.anode_only_turns
    no_cathode = inner & np.isin(material, [MATERIALS.index("cathode"), MATERIALS.index("al")])
    material = np.where(no_cathode, -1, material)
    # the tab zone: uncoated Al where the tab is welded, cathode coating absent
    tab_direction = np.radians(cell.tab_angle_deg)
    across = np.abs(-x * math.sin(tab_direction) + y * math.cos(tab_direction))
    radial = x * math.cos(tab_direction) + y * math.sin(tab_direction)
    tab = (across < cell.tab_width_m / 2) & (np.abs(radial - cell.tab_radius_m) < cell.tab_radial_extent_m / 2)
    material = np.where(tab & (material == MATERIALS.index("cathode")), MATERIALS.index("al"), material)
    labels[roll] = material[roll]
    return labels


def material_fractions(cell: CylindricalCell, n_px: int, pixel_size_m: float) -> dict[str, np.ndarray]:
    """Area fraction of each material in each pixel of an ``n_px`` x ``n_px`` grid.

    Returns
    -------
    dict of str to ndarray of float32, shape (n_px, n_px)
        One map per name in :data:`MATERIALS`; their sum is at most 1 (the rest is void).
    """
    sub = max(1, min(24, math.ceil(pixel_size_m / _SUBSAMPLE_PITCH_M)))
    fractions = {name: np.zeros((n_px, n_px), np.float32) for name in MATERIALS}
    rows_per_block = max(1, 2_000_000 // (n_px * sub * sub))
    for start in range(0, n_px, rows_per_block):
        rows = slice(start, min(n_px, start + rows_per_block))
        y, x = _coordinates(n_px, pixel_size_m, sub, rows)
        labels = _labels(cell, y, x).reshape(rows.stop - rows.start, sub, n_px, sub)
        for index, name in enumerate(MATERIALS):
            fractions[name][rows] = (labels == index).mean(axis=(1, 3))
    return fractions


def lag_field(cell: CylindricalCell, n_px: int, pixel_size_m: float, *, decay_m: float = 0.35e-3) -> np.ndarray:
    """0..1 per pixel: how much a place lags the cell's (de)lithiation.

    Exponential in the distance to the roll's outer edge (next to the steel casing), to the
    core and to the tab zone, with decay length ``decay_m``; the largest of the three.
    """
    axis = (np.arange(n_px) + 0.5) * pixel_size_m - n_px * pixel_size_m / 2
    y, x = np.meshgrid(axis, axis, indexing="ij")
    r = np.hypot(x, y)
    to_casing = np.clip(cell.roll_outer_radius_m - r, 0, None)
    to_core = np.clip(r - cell.core_radius_m, 0, None)
    tab_direction = np.radians(cell.tab_angle_deg)
    across = np.abs(-x * math.sin(tab_direction) + y * math.cos(tab_direction)) - cell.tab_width_m / 2
    radial = np.abs(x * math.cos(tab_direction) + y * math.sin(tab_direction) - cell.tab_radius_m)
    to_tab = np.hypot(np.clip(across, 0, None), np.clip(radial - cell.tab_radial_extent_m / 2, 0, None))
    nearest = np.minimum(np.minimum(to_casing, to_core), to_tab)
    return np.exp(-nearest / decay_m).astype(np.float32)
