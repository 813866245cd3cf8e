"""Filtered back-projection of XRD-CT sinograms, one angle line at a time.

- :data:`FBP_FILTERS`: ramp filters (``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``,
  ``"hamming"``, ``"hann"``), astra-toolbox's names and definitions.
- :func:`ramp_filter`: the frequency response of a filter on a padded FFT grid.
- :func:`filter_line`: one line (all translations of one angle, every radial channel)
  filtered along the translation axis.
- :class:`IncrementalFBP`: the streaming reconstruction; :meth:`IncrementalFBP.add_line`
  filters a completed line and back-projects it into the image of every selected channel,
  so the image grows while the scan runs and is final when the last line lands.
- :func:`reconstruct`: the same reconstruction of a whole sinogram at once (replays).

Conventions (those of astra-toolbox's ``parallel`` geometry and CPU ``FBP``, so that results
can be compared with it): the image is ``n_pixels x n_pixels`` with pixels of one
translation step, centred on the rotation axis; a voxel at ``(x, y)`` from the image centre
(x along columns, y along rows, in pixels) projects at angle θ onto translation
``center_px + x cos θ - y sin θ``; the filter is applied in Fourier space on a zero-padded
grid of the next power of two >= 2 n_translations; the sum over angles is weighted by
``π / n_angles``. Values are therefore per pixel of path length (divide by the translation
step in m to get per m). Back-projection interpolates linearly between translations;
translations outside the scan count as 0.

Angles in degrees at this boundary (rotation motor positions), radians inside.
Arrays: a line is ``(n_translations, n_channels)``; images are ``(n_y, n_x, n_channels)``
(channels innermost: one voxel's pattern is contiguous).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np
import scipy.fft

__all__ = ["FBP_FILTERS", "IncrementalFBP", "filter_line", "ramp_filter", "reconstruct"]

FBP_FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")


def _padded_size(n_translations: int) -> int:
    return 1 << max(1, math.ceil(math.log2(2 * n_translations)))


def ramp_filter(n_translations: int, filter_name: str = "ram-lak") -> np.ndarray:
    """Frequency response on the ``rfft`` grid of the padded line.

    Parameters
    ----------
    n_translations : int
    filter_name : str
        One of :data:`FBP_FILTERS`: the ramp ``|f|`` alone (Ram-Lak) or times a window
        (Shepp-Logan sinc, cosine, Hamming, Hann) that falls to (near) zero at Nyquist.

    Returns
    -------
    ndarray of float64, shape (n_padded // 2 + 1,)
        ``k / n_padded`` (0.5 at Nyquist, astra's scale) times the window.
    """
    if filter_name not in FBP_FILTERS:
        raise ValueError(f"filter_name must be one of {', '.join(FBP_FILTERS)}, got {filter_name!r}")
    n_padded = _padded_size(n_translations)
    relative = np.arange(n_padded // 2 + 1) / (n_padded / 2)  # 0 .. 1 at Nyquist
    # the ramp as the transform of the band-limited spatial kernel (Kak & Slaney eq. 61):
    # h(0) = 1/4, h(k odd) = -1/(π k)², so the DC term is not zero on a finite grid
    k = np.arange(n_padded)
    k = np.minimum(k, n_padded - k)
    kernel = np.zeros(n_padded)
    kernel[0] = 0.25
    odd = k % 2 == 1
    kernel[odd] = -1.0 / (np.pi * k[odd]) ** 2
    response = np.fft.rfft(kernel).real  # astra scales this by 2 and its sum over angles by 1/2
    if filter_name == "shepp-logan":
        response[1:] *= np.sin(np.pi / 2 * relative[1:]) / (np.pi / 2 * relative[1:])
    elif filter_name == "cosine":
        response *= np.cos(np.pi / 2 * relative)
    elif filter_name == "hamming":
        response *= 0.54 + 0.46 * np.cos(np.pi * relative)
    elif filter_name == "hann":
        response *= 0.5 + 0.5 * np.cos(np.pi * relative)
    return response


def filter_line(line: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Filter one line along its translation axis.

    Parameters
    ----------
    line : ndarray, shape (n_translations,) or (n_translations, n_channels)
    response : ndarray, shape (n_padded // 2 + 1,)
        From :func:`ramp_filter`.

    Returns
    -------
    ndarray of float32, the shape of ``line``
    """
    line = np.asarray(line, dtype=np.float32)
    n_padded = 2 * (response.size - 1)
    spectrum = scipy.fft.rfft(line, n=n_padded, axis=0)
    spectrum *= response.reshape((-1,) + (1,) * (line.ndim - 1)).astype(np.float32)
    return scipy.fft.irfft(spectrum, n=n_padded, axis=0)[: line.shape[0]].astype(np.float32, copy=False)


class IncrementalFBP:
    """A reconstruction that grows one angle line at a time.

    Parameters
    ----------
    n_translations : int
        Translation steps per line.
    angles_deg : ndarray of float, shape (n_angles,)
        Rotation angle of each line, degrees.
    center_px : float
        Translation index onto which the rotation axis projects.
    channels : ndarray of int or None
        Radial channels to reconstruct (indices into a line's last axis); None for all.
    filter_name : str
        One of :data:`FBP_FILTERS`.
    n_pixels : int or None
        Image size (``n_pixels x n_pixels``); None for ``n_translations``.

    Notes
    -----
    Adding the same angle twice replaces nothing: it raises, so a duplicated line is never
    counted twice. :meth:`image` may be called at any time; before the last line it is the
    partial sum, weighted as the final one will be.
    """

    def __init__(
        self,
        n_translations: int,
        angles_deg: np.ndarray,
        *,
        center_px: float,
        channels: np.ndarray | None = None,
        filter_name: str = "ram-lak",
        n_pixels: int | None = None,
    ):
        if n_translations < 2:
            raise ValueError(f"n_translations must be >= 2, got {n_translations}")
        self.n_translations = int(n_translations)
        self.angles_rad = np.radians(np.asarray(angles_deg, dtype=np.float64))
        if self.angles_rad.ndim != 1 or self.angles_rad.size < 1:
            raise ValueError("angles_deg must be a 1D array of at least one angle")
        if not math.isfinite(center_px):
            raise ValueError(f"center_px must be finite, got {center_px}")
        self.center_px = float(center_px)
        self.channels = None if channels is None else np.asarray(channels, dtype=np.intp).reshape(-1)
        self.filter_name = filter_name
        self.n_pixels = int(n_pixels or n_translations)
        self._response = ramp_filter(self.n_translations, filter_name)  # computed once
        # voxel offsets from the image centre, pixels: x along columns, y along rows
        offsets = np.arange(self.n_pixels) - (self.n_pixels - 1) / 2
        self._x_px = offsets.astype(np.float64)
        self._y_px = offsets.astype(np.float64)
        self._image: np.ndarray | None = None
        self._added = np.zeros(self.angles_rad.size, dtype=bool)

    @property
    def n_added(self) -> int:
        """Lines back-projected so far."""
        return int(self._added.sum())

    @property
    def complete(self) -> bool:
        """Whether every angle has been added."""
        return bool(self._added.all())

    @property
    def added(self) -> np.ndarray:
        """Which angles have been added, shape (n_angles,) (a copy)."""
        return self._added.copy()

    def reset(self) -> None:
        """Forget every line (same geometry)."""
        self._image = None
        self._added[:] = False

    def add_line(self, angle_index: int, line: np.ndarray) -> None:
        """Filter one line and back-project it.

        Parameters
        ----------
        angle_index : int
        line : ndarray, shape (n_translations, n_radial) or (n_translations,)
            Air-corrected patterns of the line, by translation index (not modified).

        Raises
        ------
        ValueError
            Wrong shape, an index out of range, or an angle already added.
        """
        if not 0 <= angle_index < self.angles_rad.size:
            raise ValueError(f"angle_index must be within [0, {self.angles_rad.size}), got {angle_index}")
        if self._added[angle_index]:
            raise ValueError(f"angle {angle_index} was already added")
        line = np.asarray(line)
        if line.ndim == 1:
            line = line[:, None]
        if line.ndim != 2 or line.shape[0] != self.n_translations:
            raise ValueError(f"line must have shape ({self.n_translations}, n_radial), got {line.shape}")
        if self.channels is not None:
            line = line[:, self.channels]
        filtered = filter_line(line, self._response)
        if self._image is None:
            self._image = np.zeros((self.n_pixels, self.n_pixels, filtered.shape[1]), dtype=np.float32)
        elif self._image.shape[2] != filtered.shape[1]:
            raise ValueError(f"line has {filtered.shape[1]} channels, earlier lines had {self._image.shape[2]}")
        theta = self.angles_rad[angle_index]
        _kernel_back_project(
            self._image, np.ascontiguousarray(filtered), self._x_px, self._y_px, math.cos(theta), math.sin(theta),
            self.center_px,
        )  # fmt: skip
        self._added[angle_index] = True

    def channel_image(self, channel: int) -> np.ndarray | None:
        """The reconstruction so far at radial ``channel`` (an index into a line's last
        axis), ``(n_pixels, n_pixels)`` float32, or None before the first line or for a
        channel not reconstructed."""
        if self._image is None:
            return None
        if self.channels is not None:
            found = np.flatnonzero(self.channels == channel)
            if not found.size:
                return None
            channel = int(found[0])
        return self._image[:, :, channel] * np.float32(np.pi / self.angles_rad.size)

    def image(self) -> np.ndarray:
        """The reconstruction so far, ``(n_pixels, n_pixels, n_channels)`` float32 (a copy).

        Raises
        ------
        RuntimeError
            Before the first line.
        """
        if self._image is None:
            raise RuntimeError("no line added yet")
        return self._image * np.float32(np.pi / self.angles_rad.size)


def reconstruct(
    sinogram: np.ndarray,
    angles_deg: np.ndarray,
    *,
    center_px: float,
    channels: np.ndarray | None = None,
    filter_name: str = "ram-lak",
    n_pixels: int | None = None,
    line_order: Sequence[int] | None = None,
) -> np.ndarray:
    """Filtered back-projection of a whole sinogram (replays, batch reprocessing).

    Parameters
    ----------
    sinogram : ndarray, shape (n_angles, n_translations, n_radial)
    angles_deg, center_px, channels, filter_name, n_pixels
        As :class:`IncrementalFBP`.
    line_order : sequence of int or None
        The order the lines are summed in (every angle index once); None for increasing angle.
        A live reconstruction's order gives its image bit for bit (float32 sums depend on it).

    Returns
    -------
    ndarray of float32, shape (n_pixels, n_pixels, n_channels)
        Equal to an :class:`IncrementalFBP` fed every line. Each channel is reconstructed
        on its own: a block of channels gives those channels of the whole, bit for bit.
    """
    sinogram = np.asarray(sinogram)
    if sinogram.ndim == 2:
        sinogram = sinogram[..., None]
    if sinogram.ndim != 3 or sinogram.shape[0] != np.size(angles_deg):
        raise ValueError(f"sinogram must have shape (n_angles, n_translations, n_radial), got {sinogram.shape}")
    fbp = IncrementalFBP(
        sinogram.shape[1], angles_deg, center_px=center_px, channels=channels, filter_name=filter_name,
        n_pixels=n_pixels,
    )  # fmt: skip
    for angle_index in range(sinogram.shape[0]) if line_order is None else line_order:
        fbp.add_line(int(angle_index), sinogram[angle_index])
    if not fbp.complete:
        raise ValueError(f"line_order holds {fbp.n_added} of the {sinogram.shape[0]} angles")
    return fbp.image()


@numba.njit(cache=True, parallel=True, nogil=True)
def _kernel_back_project(  # noqa: PLR0917  (a numba kernel takes plain arrays)
    image, filtered, x_px, y_px, cos_t, sin_t, center_px
):  # pragma: no cover
    """Add one filtered line to every voxel.

    The transpose of Joseph's projector (astra's ``linear``): a voxel at translation ``t``
    takes the line through a triangle of half-width ``a = max(|cos θ|, |sin θ|)`` and unit
    area centred on ``t``; with ``a <= 1`` at most the two nearest translations contribute.
    """
    n_y, n_x, n_channels = image.shape
    n_t = filtered.shape[0]
    half_width = max(abs(cos_t), abs(sin_t))
    inverse = 1.0 / half_width
    for iy in numba.prange(n_y):
        y_term = center_px - y_px[iy] * sin_t
        for ix in range(n_x):
            t = y_term + x_px[ix] * cos_t
            i0 = math.floor(t)
            frac = t - i0
            w0 = np.float32(max(0.0, 1.0 - frac * inverse) * inverse)
            w1 = np.float32(max(0.0, 1.0 - (1.0 - frac) * inverse) * inverse)
            if i0 >= 0 and i0 + 1 < n_t:
                for c in range(n_channels):
                    image[iy, ix, c] += w0 * filtered[i0, c] + w1 * filtered[i0 + 1, c]
            elif i0 == -1:
                for c in range(n_channels):
                    image[iy, ix, c] += w1 * filtered[0, c]
            elif i0 == n_t - 1:
                for c in range(n_channels):
                    image[iy, ix, c] += w0 * filtered[n_t - 1, c]
