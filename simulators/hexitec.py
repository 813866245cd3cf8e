"""HEXITEC 80 x 80 spectroscopic detector frames at 9118.87 Hz, from XCS physics.

:class:`HexitecSimulator` takes the atoms under each pixel (:func:`~.xcs.sheet_column_atoms`)
and an :class:`~.xcs.XcsModel`, and makes raw frames as the detector reads them out:

- sparse photon hits: each frame holds Poisson(occupancy x 6400) photons, each drawn from a
  pixel and an element in proportion to the element's scattering there, its energy from that
  element's spectrum (Compton band and elastic line); W/Pb fluorescence photons evenly;
- CdTe K escape (the photon loses 23.17 or 27.47 keV; half of those fluorescence photons are
  absorbed in a random other pixel);
- charge sharing: a photon's charge splits over two pixels (a 4-neighbour) or three (two
  orthogonal neighbours), each neighbour taking 12-45 % of it;
- per-pixel gain and offset in raw ADC units (E = gradient x (ADC - pedestal) + intercept for a
  hit), electronic noise giving the 0.93 keV FWHM resolution, uint16 output.

``truth`` counts photons by how many pixels they lit, escapes and background photons, so that
an event-processing chain can be checked against it. :meth:`expected_spectra` is the exact
expectation of a pixel's single-pixel-equivalent spectrum per frame (what a perfect chain
recovers). :meth:`write_calibration` writes the per-pixel gradient and intercept files.
Deterministic for a given ``rng``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .xcs import CD_K_EDGE_KEV, CD_KA_KEV, TE_K_EDGE_KEV, TE_KA_KEV, XcsModel

__all__ = ["FRAME_RATE_HZ", "SHAPE", "ChargeSharing", "HexitecSimulator", "HexitecTruth"]

FRAME_RATE_HZ = 9118.87
SHAPE = (80, 80)
_N_PIXELS = SHAPE[0] * SHAPE[1]
_NOISE_BANK_FRAMES = 512
_NEIGHBOURS = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)])
_THIRD = 0.3


def _on_detector(row: np.ndarray, col: np.ndarray) -> np.ndarray:
    return (row >= 0) & (row < SHAPE[0]) & (col >= 0) & (col < SHAPE[1])


@dataclass(frozen=True, kw_only=True)
class ChargeSharing:
    """How often a photon's charge spreads, and how much each neighbour takes."""

    two_pixel: float = 0.20
    three_pixel: float = 0.04
    min_share: float = 0.12
    max_share: float = 0.45

    def __post_init__(self) -> None:
        if not (0 <= self.two_pixel and 0 <= self.three_pixel and self.two_pixel + self.three_pixel <= 1):
            raise ValueError("charge-sharing probabilities must be >= 0 and sum to at most 1")
        if not 0 < self.min_share <= min(self.max_share, _THIRD) or self.max_share >= 0.5:
            raise ValueError(
                "need 0 < min_share <= max_share < 0.5 (and min_share <= 0.3) so the hit pixel keeps the most"
            )


@dataclass
class HexitecTruth:
    """Photons generated so far, by the number of pixels their charge reached."""

    photons: int = 0
    single: int = 0
    two_pixel: int = 0
    three_pixel: int = 0
    escapes: int = 0
    fluorescence: int = 0
    shield: int = 0
    frames: int = 0


@dataclass
class HexitecSimulator:
    """Raw HEXITEC frames of the sheet beam's scattering.

    Parameters
    ----------
    column_atoms : dict of int to ndarray (80, 80)
        Atoms of each element under each pixel.
    model : XcsModel
    occupancy : float
        Mean photons per pixel per frame (0.01: 64 photons in a frame).
    sharing : ChargeSharing
    rng : numpy.random.Generator
    """

    column_atoms: dict[int, np.ndarray]
    model: XcsModel = field(default_factory=XcsModel)
    occupancy: float = 0.01
    sharing: ChargeSharing = field(default_factory=ChargeSharing)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __post_init__(self) -> None:
        if not 0 < self.occupancy < 0.5:
            raise ValueError(f"occupancy must be within (0, 0.5), got {self.occupancy}")
        self.elements = sorted(self.column_atoms)
        sources = [self.model.element_source(z) for z in self.elements]
        atoms = np.stack([np.asarray(self.column_atoms[z], float).reshape(-1) for z in self.elements], axis=1)
        scatter = atoms * np.array([source.sum() for source in sources])[None]  # (pixel, element)
        # W/Pb fluorescence: a fixed share of all photons, the same in every pixel
        shield_total = self.model.shield_fraction / (1 - self.model.shield_fraction) * scatter.sum()
        rates = np.concatenate([scatter, np.full((_N_PIXELS, 1), shield_total / _N_PIXELS)], axis=1)
        self._photons_per_unit = self.occupancy * _N_PIXELS / rates.sum()
        self._shield_per_frame = shield_total * self._photons_per_unit
        self._rate_cdf = np.cumsum(rates.reshape(-1))
        self._rate_cdf /= self._rate_cdf[-1]
        self._n_components = rates.shape[1]
        self._energy_cdfs = [np.cumsum(s) / s.sum() for s in [*sources, self.model.shield_source()]]
        self._element_spectra = np.stack(sources)  # photons per atom on the fine grid
        self._atoms = atoms
        # calibration: E = gradient (ADC - pedestal) + intercept, for a hit pixel
        self.gradient_kev = self.rng.normal(0.0287, 0.0287 * 0.02, SHAPE).astype(np.float32)
        self.intercept_kev = self.rng.normal(0.0, 0.3, SHAPE).astype(np.float32)
        self.pedestal_adu = self.rng.normal(1200.0, 60.0, SHAPE).astype(np.float32)
        sigma_kev = self.model.resolution_fwhm_kev / (2 * math.sqrt(2 * math.log(2)))
        # a bank of idle read-outs (pedestal + electronic noise): frames draw from it, which
        # keeps a frame's cost to its few hits (the noise of one frame repeats in others)
        noise = self.rng.standard_normal((_NOISE_BANK_FRAMES, *SHAPE), np.float32) * (sigma_kev / self.gradient_kev)
        self._idle_adu = np.clip(np.rint(self.pedestal_adu + noise), 0, 65535).astype(np.uint16)
        self.truth = HexitecTruth()

    # -- expectations ---------------------------------------------------------------------------

    def expected_spectra(self, *, charge_sharing: str | None = None) -> np.ndarray:
        """Expected counts per frame, (80, 80, 1000) on the HEXITEC bins: each pixel's
        scattered photons after escape and resolution, plus its share of the fluorescence
        and of the W/Pb lines.

        ``charge_sharing=None``: every photon once at its hit pixel, at the single-pixel
        resolution. ``"sum"``: what an event chain keeping single-pixel events and summing
        two-pixel ones measures: three-pixel photons dropped, two-pixel ones at √2 times the
        resolution (the noise of two pixels adds); neighbouring photons of one frame are
        assumed apart (low occupancy).
        """
        if charge_sharing not in (None, "sum"):
            raise ValueError(f"charge_sharing must be None or 'sum', got {charge_sharing!r}")
        s = self.sharing
        if charge_sharing is None:
            parts = ((1.0, self.model.resolution_fwhm_kev),)
        else:
            parts = ((1.0 - s.two_pixel - s.three_pixel, self.model.resolution_fwhm_kev),
                     (s.two_pixel, math.sqrt(2.0) * self.model.resolution_fwhm_kev))  # fmt: skip
        return sum(weight * self._expected_at(fwhm) for weight, fwhm in parts)

    def _expected_at(self, fwhm_kev: float) -> np.ndarray:
        scale = self._photons_per_unit
        escaped_spectra, escaped = self.model.escape(self._element_spectra)
        per_element = self.model.to_hexitec_bins(escaped_spectra, resolution_fwhm_kev=fwhm_kev)  # (element, bins)
        spectra = (self._atoms @ per_element).reshape(*SHAPE, -1) * scale
        # half of the escaped K photons land in a random other pixel: evenly, on average
        n_cd, n_te = (self._atoms @ escaped).sum(axis=0) * scale * 0.5
        grid = self.model.fine_energy_kev
        fluorescence = np.zeros_like(grid)
        fluorescence[np.argmin(np.abs(grid - CD_KA_KEV))] += n_cd
        fluorescence[np.argmin(np.abs(grid - TE_KA_KEV))] += n_te
        shield_escaped, shield_escapes = self.model.escape(self.model.shield_source() * self._shield_per_frame)
        fluorescence[np.argmin(np.abs(grid - CD_KA_KEV))] += 0.5 * shield_escapes[0]
        fluorescence[np.argmin(np.abs(grid - TE_KA_KEV))] += 0.5 * shield_escapes[1]
        uniform = self.model.to_hexitec_bins(shield_escaped + fluorescence, resolution_fwhm_kev=fwhm_kev) / _N_PIXELS
        return spectra + uniform[None, None]

    # -- frames ---------------------------------------------------------------------------------

    def _sample_energies(self, component: np.ndarray) -> np.ndarray:
        grid = self.model.fine_energy_kev
        step = grid[1] - grid[0]
        energies = np.empty(component.size)
        for index, cdf in enumerate(self._energy_cdfs):
            chosen = component == index
            u = self.rng.random(int(chosen.sum()))
            energies[chosen] = grid[np.minimum(np.searchsorted(cdf, u), grid.size - 1)]
        return energies + (self.rng.random(component.size) - 0.5) * step

    def frames(self, n: int) -> np.ndarray:
        """``n`` raw frames (uint16 ADC, shape (n, 80, 80)); ``truth`` is updated."""
        counts = self.rng.poisson(self.occupancy * _N_PIXELS, n)
        frame_of = np.repeat(np.arange(n), counts)
        pick = np.searchsorted(self._rate_cdf, self.rng.random(frame_of.size))
        pixel, component = np.divmod(pick, self._n_components)
        energy = self._sample_energies(component)
        row, col = np.divmod(pixel, SHAPE[1])
        # CdTe K escape: the photon keeps E - Kα; half the Kα photons are caught elsewhere
        u = self.rng.random(energy.size)
        cd = (energy > CD_K_EDGE_KEV) & (u < self.model.cd_escape)
        te = (energy > TE_K_EDGE_KEV) & (u >= self.model.cd_escape) & (u < self.model.cd_escape + self.model.te_escape)
        energy = energy - cd * CD_KA_KEV - te * TE_KA_KEV
        caught = (cd | te) & (self.rng.random(energy.size) < 0.5)
        n_caught = int(caught.sum())
        fluorescence_frame = frame_of[caught]
        fluorescence_pixel = self.rng.integers(0, _N_PIXELS, n_caught)
        fluorescence_energy = np.where(cd[caught], CD_KA_KEV, TE_KA_KEV)
        frame_of = np.concatenate([frame_of, fluorescence_frame])
        row = np.concatenate([row, fluorescence_pixel // SHAPE[1]])
        col = np.concatenate([col, fluorescence_pixel % SHAPE[1]])
        energy = np.concatenate([energy, fluorescence_energy])
        frame_of, row, col, energy = self._share_charge(frame_of, row, col, energy)
        # pedestal + noise frames from the bank, then the (sparse) signal of the hit pixels
        adc = self._idle_adu[self.rng.integers(0, _NOISE_BANK_FRAMES, n)]
        flat_index = (frame_of * SHAPE[0] + row) * SHAPE[1] + col
        hit_index, inverse = np.unique(flat_index, return_inverse=True)
        deposited_kev = np.bincount(inverse, weights=energy)
        pixel = hit_index % _N_PIXELS
        signal_adu = (deposited_kev - self.intercept_kev.reshape(-1)[pixel]) / self.gradient_kev.reshape(-1)[pixel]
        flat = adc.reshape(-1)
        flat[hit_index] = np.clip(flat[hit_index] + np.rint(signal_adu), 0, 65535).astype(np.uint16)
        truth = self.truth
        truth.frames += n
        truth.escapes += int((cd | te).sum())
        truth.fluorescence += n_caught
        truth.shield += int((component == self._n_components - 1).sum())
        return adc

    def _share_charge(
        self, frame: np.ndarray, row: np.ndarray, col: np.ndarray, energy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Split photons' charge over neighbours; returns (frame, row, col, energy) deposits."""
        s = self.sharing
        u = self.rng.random(energy.size)
        direction = self.rng.integers(0, 4, energy.size)
        first = _NEIGHBOURS[direction]
        second = _NEIGHBOURS[(direction + 1) % 4]  # orthogonal to the first: an L of 3 pixels
        r1, c1 = row + first[:, 0], col + first[:, 1]
        r2, c2 = row + second[:, 0], col + second[:, 1]
        three = (u >= s.two_pixel) & (u < s.two_pixel + s.three_pixel) & _on_detector(r1, c1) & _on_detector(r2, c2)
        two = (u < s.two_pixel) & _on_detector(r1, c1)
        # the hit pixel keeps the most charge: a share below 1/2 of two, below 1/3 of three
        share1 = np.where(
            three,
            self.rng.uniform(s.min_share, _THIRD, energy.size),
            self.rng.uniform(s.min_share, s.max_share, energy.size) * two,
        )
        share2 = np.where(three, self.rng.uniform(s.min_share, _THIRD, energy.size), 0.0)
        keep = 1 - share1 - share2
        self.truth.photons += energy.size
        self.truth.two_pixel += int(two.sum())
        self.truth.three_pixel += int(three.sum())
        self.truth.single += int(energy.size - two.sum() - three.sum())
        parts_frame = np.concatenate([frame, frame[two | three], frame[three]])
        parts_row = np.concatenate([row, r1[two | three], r2[three]])
        parts_col = np.concatenate([col, c1[two | three], c2[three]])
        parts_energy = np.concatenate([energy * keep, (energy * share1)[two | three], (energy * share2)[three]])
        return parts_frame, parts_row, parts_col, parts_energy

    def dark_frames(self, n: int) -> np.ndarray:
        """Frames with the beam off: pedestal and noise only."""
        return self._idle_adu[self.rng.integers(0, _NOISE_BANK_FRAMES, n)]

    def write_calibration(self, folder: Path) -> dict[str, Path]:
        """Per-pixel ``gradients.txt`` (keV/ADU) and ``intercepts.txt`` (keV), 80 x 80 text
        matrices as HEXITEC calibrations are distributed."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"gradients": folder / "gradients.txt", "intercepts": folder / "intercepts.txt"}
        np.savetxt(paths["gradients"], self.gradient_kev, fmt="%.6e")
        np.savetxt(paths["intercepts"], self.intercept_kev, fmt="%.6e")
        return paths
