"""Per-acquisition arrays kept on disk, the latest in memory: what keeps the XCS-CT analysis'
memory flat however long the run.

An acquisition leaves 125 kB of arrays (EMF map and its sigma, 80 x 80 float64; the region mask;
two spectra): 1.35 GB an hour at the soak's 3 acquisitions a second, when they were all in
memory (the soak measured +1.6 GB/h in the analysis once its buffers were full). A
:class:`SpilledArrays` appends each to a dataset of a temporary HDF5 file (deleted when closed;
on the results' disk, not in a TMPDIR that may be memory),
and behaves as the list it replaces: ``len``, indexing (the latest without a read), iteration
and ``numpy.asarray``. When the run's results are written, :meth:`SpilledArrays.moved_to` points
it at their copy in the sidecar file and the temporary file can go.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = ["SpillFile", "SpilledArrays"]


class SpillFile:
    """A temporary HDF5 file (``h5``) in ``folder``: gone when closed, or when the process ends."""

    def __init__(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(prefix=".operando-xcs-", dir=folder)
        self.h5 = h5py.File(self._file, "w")

    def close(self) -> None:
        self.h5.close()
        self._file.close()


class SpilledArrays:
    """Arrays of one shape and dtype, appended one at a time to ``file[name]``."""

    def __init__(self, file: SpillFile, name: str) -> None:
        self.file, self.name = file, name
        self._dataset: h5py.Dataset | None = None
        self._latest: np.ndarray | None = None
        self._moved: tuple[Path, str] | None = None  # (file, dataset) where the arrays went
        self._n = 0

    def append(self, array: Any) -> None:
        if self._moved is not None:
            raise ValueError(f"{self.name}: the run's results are written; nothing more can be added")
        array = np.asarray(array)
        if self._dataset is None:
            shape = array.shape
            self._dataset = self.file.h5.create_dataset(self.name, shape=(0, *shape), dtype=array.dtype,
                                                     maxshape=(None, *shape), chunks=(1, *shape))  # fmt: skip
        n = len(self._dataset)
        self._dataset.resize(n + 1, axis=0)
        self._dataset[n] = array
        self._latest, self._n = array, n + 1

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> np.ndarray:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: acquisition {index} of {n}")
        if index % n == n - 1:
            return self._latest
        if self._moved is not None:
            with h5py.File(self._moved[0], "r") as file:
                return file[self._moved[1]][index % n]
        return self._dataset[index % n]

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self[index]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._moved is not None and self._n:
            with h5py.File(self._moved[0], "r") as file:
                data = file[self._moved[1]][()]
        else:
            data = np.empty((0,)) if self._dataset is None else self._dataset[()]
        return data if dtype is None else data.astype(dtype)

    def write_to(self, group: h5py.Group, name: str, block: int = 256, **options: Any) -> h5py.Dataset:
        """Copy into ``group[name]`` a block of acquisitions at a time (never all in memory), in
        chunks of about 1 MB (what a reader of one acquisition decompresses)."""
        if self._moved is not None:
            raise ValueError(f"{self.name}: already written to {self._moved[0]}")
        if self._dataset is None:
            return group.create_dataset(name, data=np.empty((0,)))
        source = self._dataset
        per_chunk = max(
            1, min(len(source), (1 << 20) // max(1, source.dtype.itemsize * int(np.prod(source.shape[1:]))))
        )
        chunks = (per_chunk, *source.shape[1:])
        target = group.create_dataset(name, shape=source.shape, dtype=source.dtype, chunks=chunks, **options)
        for start in range(0, len(source), block):
            target[start : start + block] = source[start : start + block]
        return target

    def moved_to(self, path: Path, dataset: str) -> None:
        """The arrays are now ``path[dataset]`` (the sidecar file): read from there from now on."""
        self._moved, self._dataset = (Path(path), dataset), None
