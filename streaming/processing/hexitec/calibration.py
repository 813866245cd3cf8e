"""Per-pixel calibration of raw frames: ``E = gradient · (ADC - pedestal) + intercept``.

- :class:`HexitecCalibration`: per-pixel gradient, intercept and pedestal.
- :func:`read_calibration_files`: gradient and intercept from HEXITEC's text matrices.
- :func:`pedestal_from_darks`: the pedestal from frames taken with the beam off.
- :func:`_check_frames`: raw frames checked against a calibration's shape (shared with
  :mod:`.events` and :mod:`.spectra`).

Energies in keV, ADC values in ADU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

__all__ = ["HexitecCalibration", "pedestal_from_darks", "read_calibration_files"]


def _frozen_float_array(name: str, value: np.ndarray) -> np.ndarray:
    array = np.array(value, dtype=np.float64, copy=True)  # a private copy: callers keep theirs
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2D per-pixel array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds non-finite values")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class HexitecCalibration:
    """Per-pixel calibration: ``E = gradient · (ADC - pedestal) + intercept`` for a hit.

    Parameters
    ----------
    gradient_kev_per_adu : ndarray of float, shape (n_rows, n_cols)
        Gain, keV per ADU (> 0).
    intercept_kev : ndarray of float, shape (n_rows, n_cols)
        Energy offset of a hit, keV.
    pedestal_adu : ndarray of float, shape (n_rows, n_cols)
        Dark level, ADU (see :func:`pedestal_from_darks`).

    The arrays are copied to read-only float64.
    """

    gradient_kev_per_adu: np.ndarray
    intercept_kev: np.ndarray
    pedestal_adu: np.ndarray

    def __post_init__(self) -> None:
        for item in fields(self):
            object.__setattr__(self, item.name, _frozen_float_array(item.name, getattr(self, item.name)))
        shapes = {self.gradient_kev_per_adu.shape, self.intercept_kev.shape, self.pedestal_adu.shape}
        if len(shapes) != 1:
            raise ValueError(f"gradient, intercept and pedestal must share one shape, got {sorted(shapes)}")
        if np.any(self.gradient_kev_per_adu <= 0):
            raise ValueError("gradient_kev_per_adu must be > 0 in every pixel")

    @property
    def shape(self) -> tuple[int, int]:
        """Detector shape (n_rows, n_cols)."""
        return self.gradient_kev_per_adu.shape

    @classmethod
    def from_files(
        cls, gradients_path: str | Path, intercepts_path: str | Path, dark_frames: np.ndarray
    ) -> HexitecCalibration:
        """Calibration from HEXITEC gradient/intercept text files and dark frames."""
        gradient, intercept = read_calibration_files(gradients_path, intercepts_path)
        return cls(gradient, intercept, pedestal_from_darks(dark_frames))

    def energy_kev(self, frames: np.ndarray) -> np.ndarray:
        """Calibrated energy of every pixel of ``frames`` (float64, same shape), keV."""
        frames = _check_frames(frames, self.shape)
        return self.gradient_kev_per_adu * (frames - self.pedestal_adu) + self.intercept_kev


def read_calibration_files(gradients_path: str | Path, intercepts_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read per-pixel ``gradients.txt`` (keV/ADU) and ``intercepts.txt`` (keV) matrices.

    These are whitespace-separated text matrices, one detector row per line, as HEXITEC
    calibrations are distributed (and as ``simulators.hexitec.HexitecSimulator.write_calibration``
    writes them). Read once at set-up, never per frame.

    Returns
    -------
    gradient_kev_per_adu, intercept_kev : ndarray of float64, shape (n_rows, n_cols)
    """
    gradient = np.loadtxt(gradients_path, dtype=np.float64, ndmin=2)
    intercept = np.loadtxt(intercepts_path, dtype=np.float64, ndmin=2)
    if gradient.shape != intercept.shape:
        raise ValueError(
            f"{gradients_path} has shape {gradient.shape} but {intercepts_path} has shape {intercept.shape}"
        )
    return gradient, intercept


def pedestal_from_darks(dark_frames: np.ndarray, *, clip_sigma: float = 5.0) -> np.ndarray:
    """Per-pixel pedestal (ADU) from frames taken with the beam off.

    The mean of each pixel over the frames, leaving out values more than ``clip_sigma``
    robust standard deviations (1.4826 × MAD, at least 1 ADU) from the pixel's median, so a
    stray photon in a dark frame does not lift the pedestal.

    Parameters
    ----------
    dark_frames : ndarray of uint16, shape (n_frames, n_rows, n_cols)
    clip_sigma : float

    Returns
    -------
    ndarray of float64, shape (n_rows, n_cols)
    """
    darks = np.asarray(dark_frames)
    if darks.ndim != 3 or darks.shape[0] < 1:
        raise ValueError(f"dark_frames must have shape (n_frames, n_rows, n_cols), got {darks.shape}")
    if clip_sigma <= 0:
        raise ValueError(f"clip_sigma must be > 0, got {clip_sigma}")
    values = darks.astype(np.float64)
    median = np.median(values, axis=0)
    sigma = np.maximum(1.4826 * np.median(np.abs(values - median), axis=0), 1.0)
    inside = np.abs(values - median) <= clip_sigma * sigma
    return (values * inside).sum(axis=0) / np.maximum(inside.sum(axis=0), 1)


def _check_frames(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Frames as a C-contiguous uint16 (n, n_rows, n_cols) array (a view when possible)."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint16:
        raise ValueError(f"frames must be raw uint16 ADC values, got dtype {frames.dtype}")
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[1:] != tuple(shape):
        raise ValueError(f"frames must have shape (n_frames, {shape[0]}, {shape[1]}), got {frames.shape}")
    return np.ascontiguousarray(frames)
