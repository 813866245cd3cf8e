"""Per-acquisition arrays on disk (the XCS-CT analysis' results): a list to their readers,
flat memory however many acquisitions."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from streaming.analysis.xcsct.spill import SpilledArrays, SpillFile


def test_spilled_arrays_read_back_as_the_list_they_replace(tmp_path):
    spill = SpillFile(tmp_path)
    maps = SpilledArrays(spill, "emf_map")
    arrays = [np.full((80, 80), i, np.float64) for i in range(5)]
    for array in arrays:
        maps.append(array)
    assert len(maps) == 5 and maps
    np.testing.assert_array_equal(maps[1], arrays[1])
    assert maps[-1] is arrays[-1]  # the latest without a read
    np.testing.assert_array_equal(np.asarray(maps), np.stack(arrays))
    np.testing.assert_array_equal(np.stack(list(maps)), np.stack(arrays))
    with pytest.raises(IndexError):
        maps[5]
    with h5py.File(tmp_path / "results.h5", "w") as file:
        maps.write_to(file, "emf_map", block=2, compression="gzip")
    maps.moved_to(tmp_path / "results.h5", "emf_map")
    spill.close()  # the copy in the results file is what is read now
    np.testing.assert_array_equal(maps[2], arrays[2])
    np.testing.assert_array_equal(np.asarray(maps), np.stack(arrays))
    with pytest.raises(ValueError, match="written"):
        maps.append(arrays[0])


def test_thousands_of_acquisitions_hold_no_more_memory_than_one(tmp_path):
    spill = SpillFile(tmp_path)
    maps = SpilledArrays(spill, "emf_map")
    maps.append(np.zeros((80, 80)))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):  # 100 MB of 80 x 80 float64 maps, were they kept
            maps.append(np.full((80, 80), float(i)))
        grown_bytes = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        spill.close()
    assert grown_bytes < 2e6
