"""A small synthetic run: bluesky documents plus area-detector frames of powder rings.

It exercises the transport, recorder and replay with real documents (made by event-model's
``compose_run``) and realistic frames (Poisson counts on Debye-Scherrer-like rings over a
zigzag raster) until the physics simulators of the XRD-CT and XCS-CT modes drive the
devices. Knows nothing of ZeroMQ: it yields what a publisher sends.

- :func:`ring_pattern_frames`: the per-ring images whose weighted sum makes a frame.
- :class:`SyntheticRun`: the run's documents and frames, in the order a RunEngine and a
  detector would emit them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from event_model import compose_run

__all__ = ["SyntheticDocument", "SyntheticFrame", "SyntheticRun", "ring_pattern_frames"]


class SyntheticDocument(NamedTuple):
    name: str
    doc: dict[str, Any]


class SyntheticFrame(NamedTuple):
    run_uid: str
    stream: str
    data: np.ndarray
    positions: dict[str, float]
    indices: dict[str, int]
    timestamp: float


def ring_pattern_frames(shape: tuple[int, int], radii_px: np.ndarray, width_px: float) -> np.ndarray:
    """Unit-height Gaussian rings centred on the detector.

    Parameters
    ----------
    shape : (int, int)
        Detector shape (rows, columns), pixels.
    radii_px : ndarray of float, shape (n_rings,)
        Ring radii, pixels.
    width_px : float
        Gaussian standard deviation of each ring, pixels.

    Returns
    -------
    ndarray of float32, shape (n_rings, rows, columns)
    """
    rows, cols = np.indices(shape, dtype=np.float32)
    radius = np.hypot(rows - (shape[0] - 1) / 2, cols - (shape[1] - 1) / 2)
    radii = np.asarray(radii_px, np.float32)[:, None, None]
    return np.exp(-0.5 * ((radius[None] - radii) / np.float32(width_px)) ** 2)


@dataclass(frozen=True, kw_only=True)
class SyntheticRun:
    """A zigzag raster (stepped rotation, translation lines alternating direction).

    Attributes
    ----------
    n_angles, n_translations : int
        Raster size; ``n_angles * n_translations`` frames.
    frame_shape : (int, int)
        Detector shape, pixels.
    dtype : str
        Frame dtype (Pilatus writes int32).
    background_counts : float
        Mean counts per pixel away from the rings.
    ring_counts : float
        Peak counts of the strongest ring.
    stream : str
        Detector (stream) name.
    seed : int
        Seed of the Poisson noise and ring weights.
    """

    n_angles: int = 4
    n_translations: int = 8
    frame_shape: tuple[int, int] = (128, 128)
    dtype: str = "int32"
    background_counts: float = 0.5
    ring_counts: float = 40.0
    stream: str = "pilatus"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_angles", "n_translations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def n_frames(self) -> int:
        return self.n_angles * self.n_translations

    def messages(self, *, clock: Any = time.time) -> Iterator[SyntheticDocument | SyntheticFrame]:
        """Documents and frames in emission order: start, descriptor, then per point an
        event and its frame, then stop."""
        rng = np.random.default_rng(self.seed)
        n_rings = 4
        rings = ring_pattern_frames(
            self.frame_shape, np.linspace(0.15, 0.45, n_rings) * min(self.frame_shape), width_px=1.5
        )
        # a phase map: each (angle, translation) sees its own mix of ring intensities
        weights = rng.uniform(0.2, 1.0, (self.n_angles, self.n_translations, n_rings)).astype(np.float32)
        angles_deg = np.linspace(0.0, 180.0, self.n_angles, endpoint=False)
        translations_mm = (np.arange(self.n_translations) - (self.n_translations - 1) / 2) * 0.02
        bundle = compose_run(
            metadata={
                "plan_name": "synthetic_zigzag",
                "scan_id": 1,
                "shape": [self.n_angles, self.n_translations],
                "snaking": [False, True],
                "motors": ["rotation", "translation"],
                "extents": [[0.0, 180.0], [float(translations_mm[0]), float(translations_mm[-1])]],
                "detectors": [self.stream],
                "num_points": self.n_frames,
                "hints": {"dimensions": [(["rotation"], "primary"), (["translation"], "primary")]},
            },
            time=clock(),
        )
        run_uid = bundle.start_doc["uid"]
        yield SyntheticDocument("start", bundle.start_doc)
        descriptor = bundle.compose_descriptor(
            name="primary",
            data_keys={
                "rotation": {"source": "SIM:rotation", "dtype": "number", "shape": [], "units": "deg"},
                "translation": {"source": "SIM:translation", "dtype": "number", "shape": [], "units": "mm"},
                f"{self.stream}_seq": {"source": f"SIM:{self.stream}", "dtype": "integer", "shape": []},
            },
            time=clock(),
        )
        yield SyntheticDocument("descriptor", descriptor.descriptor_doc)
        seq = 0
        for angle_index in range(self.n_angles):
            order = range(self.n_translations)
            for translation_index in order if angle_index % 2 == 0 else reversed(order):
                expected = self.background_counts + self.ring_counts * np.tensordot(
                    weights[angle_index, translation_index], rings, axes=1
                )
                data = rng.poisson(expected).astype(self.dtype)
                positions = {
                    "rotation": float(angles_deg[angle_index]),
                    "translation": float(translations_mm[translation_index]),
                }
                now = clock()
                event = descriptor.compose_event(
                    data={**positions, f"{self.stream}_seq": seq},
                    timestamps={key: now for key in (*positions, f"{self.stream}_seq")},
                    seq_num=seq + 1,
                    time=now,
                )
                yield SyntheticDocument("event", event)
                yield SyntheticFrame(
                    run_uid,
                    self.stream,
                    data,
                    positions,
                    {"angle": angle_index, "translation": translation_index},
                    now,
                )
                seq += 1
        yield SyntheticDocument("stop", bundle.compose_stop(exit_status="success", time=clock()))
