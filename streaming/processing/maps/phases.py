"""Phase decomposition: non-negative least squares of every voxel pattern on reference patterns.

:func:`decompose_phases` fits the components of each :class:`~.config.PhaseReference` (a
phase may have several, e.g. the two ends of a lattice range, whose weights are summed)
→ :class:`PhaseDecomposition`; :func:`join_phase_decompositions` joins those of blocks of
image rows fitted apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.optimize

from .config import PhaseReference
from .voxels import _voxels

__all__ = ["PhaseDecomposition", "decompose_phases", "join_phase_decompositions"]


@dataclass(frozen=True)
class PhaseDecomposition:
    """Non-negative weights of every reference component in every voxel.

    Attributes
    ----------
    weights : dict of str to ndarray of float32, shape (n_y, n_x)
        Per phase: the sum of its components' weights (units of the references).
    component_weights : ndarray of float32, shape (n_y, n_x, n_components)
    components : list of str
        ``"<phase>[<k>]"`` for each column of ``component_weights``.
    relative_residual : ndarray of float32, shape (n_y, n_x)
        ``|pattern - fitted| / |pattern|`` over the fitted range.
    """

    weights: dict[str, np.ndarray]
    component_weights: np.ndarray
    components: list[str]
    relative_residual: np.ndarray
    _basis: np.ndarray = field(repr=False)
    _owner: np.ndarray = field(repr=False)

    @property
    def fitted(self) -> np.ndarray:
        """Each voxel's fitted pattern, (n_y, n_x, n_radial) float32 (made when asked: at the
        paper's size it is as large as the reconstruction)."""
        return np.einsum("yxk,kr->yxr", self.component_weights, self._basis).astype(np.float32)

    def fitted_without(self, phase: str) -> np.ndarray:
        """The fitted patterns of every phase but ``phase``, (n_y, n_x, n_radial)."""
        others = self._owner != phase
        return np.einsum("yxk,kr->yxr", self.component_weights[..., others], self._basis[others]).astype(np.float32)


def decompose_phases(
    reconstruction: np.ndarray,
    radial_deg: np.ndarray,
    phases: tuple[PhaseReference, ...] | list[PhaseReference],
    *,
    range_deg: tuple[float, float] | None = None,
) -> PhaseDecomposition:
    """Each voxel pattern as a non-negative combination of the phases' reference patterns.

    Exact NNLS per voxel, made cheap by working on the ``k x k`` normal equations
    (k = components, a few dozen at most) instead of the ``n_radial``-long patterns:
    ``|R w - p|² = |Lᵀ w - L⁻¹ R p|² + const`` with ``R Rᵀ = L Lᵀ`` (Cholesky). All voxels are
    first solved unconstrained in one batched call; only those with a negative weight go
    through Lawson-Hanson (``scipy.optimize.nnls``) on their k x k system.

    Parameters
    ----------
    reconstruction : ndarray, shape (n_y, n_x, n_radial)
    radial_deg : ndarray of float, shape (n_radial,)
    phases : sequence of PhaseReference
    range_deg : (float, float) or None
        2θ range fitted; None for the whole axis.

    Returns
    -------
    PhaseDecomposition
    """
    flat, radial = _voxels(reconstruction, radial_deg)
    if not phases:
        raise ValueError("need at least one phase reference")
    blocks = [phase.on(radial) for phase in phases]
    basis = np.concatenate(blocks)  # (k, n_radial)
    owner = np.array([phase.name for phase, block in zip(phases, blocks, strict=True) for _ in block])
    components = [f"{phase.name}[{i}]" for phase, block in zip(phases, blocks, strict=True) for i in range(len(block))]
    used = np.ones(radial.size, bool) if range_deg is None else (radial >= range_deg[0]) & (radial <= range_deg[1])
    design = basis[:, used]
    scale = np.linalg.norm(design, axis=1)
    if np.any(scale == 0):
        empty = [c for c, s in zip(components, scale, strict=True) if s == 0]
        raise ValueError(f"reference components {empty} are zero over the fitted range")
    design = design / scale[:, None]  # unit rows: the normal matrix is a correlation matrix
    gram = design @ design.T
    # a whisker of ridge keeps near-collinear components (two ends of a lattice) factorisable
    gram += 1e-10 * np.eye(gram.shape[0])
    cholesky = np.linalg.cholesky(gram)
    weights = np.empty((flat.shape[0], basis.shape[0]), dtype=np.float64)
    residual = np.empty(flat.shape[0], dtype=np.float64)
    # voxels in blocks: float64 copies of every pattern at once took ~15 GB at the paper's
    # size (301 401 voxels x 2000 bins), more than the machine's 24 GB with the volume
    for block in _voxel_blocks(flat.shape[0], used.sum()):
        patterns = flat[block][:, used].astype(np.float64)
        projections = patterns @ design.T  # (n_block, k)
        block_weights = np.linalg.solve(gram, projections.T).T
        negative = np.flatnonzero(np.any(block_weights < 0, axis=1))
        if negative.size:
            targets = scipy.linalg.solve_triangular(cholesky, projections[negative].T, lower=True)
            upper = cholesky.T
            for row, target in zip(negative, targets.T, strict=True):
                block_weights[row] = scipy.optimize.nnls(upper, target)[0]
        block_weights /= scale  # back to the units of the references
        norm = np.linalg.norm(patterns, axis=1)
        residual[block] = np.linalg.norm(patterns - block_weights @ basis[:, used], axis=1) / np.where(
            norm > 0, norm, 1.0
        )
        weights[block] = block_weights
    shape = reconstruction.shape[:2]
    per_phase = {phase.name: weights[:, owner == phase.name].sum(axis=1).reshape(shape).astype(np.float32)
                 for phase in phases}  # fmt: skip
    return PhaseDecomposition(
        weights=per_phase,
        component_weights=weights.reshape(*shape, -1).astype(np.float32),
        components=components,
        relative_residual=residual.reshape(shape).astype(np.float32),
        _basis=basis,
        _owner=owner,
    )


def join_phase_decompositions(parts: list[PhaseDecomposition]) -> PhaseDecomposition:
    """The decompositions of consecutive blocks of image rows (same references) as one."""
    first = parts[0]
    return PhaseDecomposition(
        weights={name: np.concatenate([part.weights[name] for part in parts]) for name in first.weights},
        component_weights=np.concatenate([part.component_weights for part in parts]),
        components=first.components,
        relative_residual=np.concatenate([part.relative_residual for part in parts]),
        _basis=first._basis,
        _owner=first._owner,
    )


def _voxel_blocks(n_voxels: int, n_values: int, block_bytes: int = 64 << 20) -> list[slice]:
    """Slices of voxels whose float64 patterns take about ``block_bytes``."""
    step = max(1, block_bytes // (8 * max(1, int(n_values))))
    return [slice(start, min(n_voxels, start + step)) for start in range(0, n_voxels, step)]
