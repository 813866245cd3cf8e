"""Physics behind the simulated devices; deterministic, seeded, free of ophyd and ZeroMQ."""

from .synthetic import SyntheticRun, ring_pattern_frames

__all__ = ["SyntheticRun", "ring_pattern_frames"]
