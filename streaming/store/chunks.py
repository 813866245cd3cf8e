"""Frame chunks of the run files: compression choices and the chunk codecs.

- :data:`COMPRESSIONS` and :func:`compression_filter`: the HDF5 filters the writer offers.
- :func:`encode_chunk`: one frame as a whole HDF5 chunk, encoded here for
  ``write_direct_chunk`` (bitshuffle-LZ4 byte-identical to the HDF5 filter's, or raw).
- :func:`read_frame`: one frame back, decoded here when it is bitshuffle-LZ4.
- :data:`RESULTS_COMPRESSION` and :func:`results_chunks`: how the analyses' results files are
  compressed (gzip, which every HDF5 reader has), and chunked.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Mapping
from typing import Any

import bitshuffle
import h5py
import hdf5plugin
import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["COMPRESSIONS", "RESULTS_COMPRESSION", "chunk_encoder", "compression_filter", "is_bitshuffle_lz4",
           "read_frame", "results_chunks"]  # fmt: skip

#: The analyses' results (sinograms, reconstructions, cubes): filters every HDF5 reader has
#: (plain h5py, h5web, MATLAB, without hdf5plugin). On the 2-core machine, a small-preset
#: reconstruction (160 x 160 x 1000 float32, 102 MB) took 1.1 s at gzip level 1 with the shuffle
#: and packed 2.9x, where bitshuffle-LZ4 took 0.18 s and packed 2.0x; gzip level 4, 2.0 s and
#: 2.7x. The analyses write in a thread of their own (h5py releases the GIL while it writes), so
#: the time is off their critical path.
RESULTS_COMPRESSION: Mapping[str, Any] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}

#: Frame compression choices. Bitshuffle+LZ4 is what DECTRIS detectors write: on this
#: project's 2-core machine it compressed Pilatus-like Poisson frames 14x at 178 frames/s
#: through h5py's filter pipeline, where zstd managed 30 frames/s and no filter
#: (disk-bound) 46 frames/s.
COMPRESSIONS = ("bitshuffle-lz4", "bitshuffle-zstd", "blosc2-lz4", "none")

# Bitshuffle's default block: 8 KiB of elements, a multiple of 8, at least 128 elements.
_BSHUF_TARGET_BLOCK_BYTES = 8192
_BSHUF_LZ4 = 2  # the filter's option value for LZ4
_openmp_limited = threading.local()


def _single_openmp_thread() -> None:
    # bitshuffle's OpenMP threads (and their spin-waits) starve the ZeroMQ I/O thread on a
    # 2-core machine: the recorder took 36 Pilatus frames/s with two of them, 195 with one.
    # The limit holds for the calling thread only.
    if not getattr(_openmp_limited, "done", False):
        threadpool_limits(limits=1, user_api="openmp")
        _openmp_limited.done = True


def _bitshuffle_lz4_chunk(data: np.ndarray) -> bytes:
    """One HDF5 chunk in the bitshuffle filter's LZ4 format, byte-identical to the filter's.

    Compressing here and writing with ``write_direct_chunk`` bypasses h5py's filter
    pipeline: a Pilatus 2M int32 frame takes 1.9 ms with the ``bitshuffle`` package's SIMD
    build against 6.3 ms through hdf5plugin's filter (built without AVX2) on this project's
    machine. Header: uncompressed bytes (uint64, big-endian), block bytes (uint32, BE).
    """
    _single_openmp_thread()
    block = max(_BSHUF_TARGET_BLOCK_BYTES // data.itemsize // 8 * 8, 128)
    compressed = bitshuffle.compress_lz4(data.reshape(-1), block)
    return struct.pack(">QI", data.nbytes, block * data.itemsize) + compressed.tobytes()


def read_frame(dataset: h5py.Dataset, index: int, *, direct: bool | None = None) -> np.ndarray:
    """Frame ``index`` of a ``data`` dataset written by :class:`RunFileWriter`.

    Bitshuffle-LZ4 chunks are read raw and decompressed by the ``bitshuffle`` package:
    2.9 ms per Pilatus 2M frame against 4.4 ms through h5py's filter pipeline. ``direct``:
    :func:`is_bitshuffle_lz4` of the dataset when the caller knows it (checking costs
    0.7 ms), None to check.
    """
    if direct is None:
        direct = is_bitshuffle_lz4(dataset)
    if direct:
        _single_openmp_thread()
        _, chunk = dataset.id.read_direct_chunk((index,) + (0,) * (dataset.ndim - 1))
        uncompressed_bytes, block_bytes = struct.unpack(">QI", chunk[:12])
        frame_shape = dataset.shape[1:]
        if uncompressed_bytes == dataset.dtype.itemsize * int(np.prod(frame_shape)):
            return bitshuffle.decompress_lz4(
                np.frombuffer(chunk, np.uint8, offset=12),
                frame_shape,
                dataset.dtype,
                block_bytes // dataset.dtype.itemsize,
            )
    return dataset[index]


def is_bitshuffle_lz4(dataset: h5py.Dataset) -> bool:
    """Whether ``dataset`` holds one frame per chunk compressed by bitshuffle-LZ4 alone."""
    plist = dataset.id.get_create_plist()
    if dataset.chunks != (1, *dataset.shape[1:]) or plist.get_nfilters() != 1:
        return False
    filter_id, _, options, _ = plist.get_filter(0)
    return filter_id == hdf5plugin.BSHUF_ID and len(options) >= 5 and options[4] == _BSHUF_LZ4


def _raw_chunk(data: np.ndarray) -> bytes:
    return data.tobytes()


_CHUNK_ENCODERS = {"bitshuffle-lz4": _bitshuffle_lz4_chunk, "none": _raw_chunk}


def chunk_encoder(compression: str) -> Callable[[np.ndarray], bytes] | None:
    """The encoder of whole-frame chunks for ``write_direct_chunk``, or None where h5py's
    filter pipeline must do it."""
    return _CHUNK_ENCODERS.get(compression)


def results_chunks(shape: tuple[int, ...], itemsize: int, *, chunk_bytes: int = 4 << 20) -> tuple[int, ...]:
    """Chunks of a results dataset of ``shape``: whole trailing axes, as many leading slices
    as fit in ``chunk_bytes`` (at least one; a compressed chunk is read whole)."""
    if not shape:
        return ()
    slice_bytes = itemsize * int(np.prod(shape[1:], dtype=np.int64))
    return (max(1, min(shape[0], chunk_bytes // max(1, slice_bytes))), *shape[1:])


def compression_filter(name: str) -> Mapping[str, Any]:
    """``h5py.create_dataset`` keywords for a frame compression named in :data:`COMPRESSIONS`."""
    if name == "bitshuffle-lz4":
        return hdf5plugin.Bitshuffle(cname="lz4")
    if name == "bitshuffle-zstd":
        return hdf5plugin.Bitshuffle(cname="zstd")
    if name == "blosc2-lz4":
        return hdf5plugin.Blosc2(cname="lz4", filters=hdf5plugin.Blosc2.BITSHUFFLE)
    if name == "none":
        return {}
    raise ValueError(f"compression must be one of {COMPRESSIONS}, got {name!r}")
