"""System tests: parts that need more than this machine (GPU, IOCs); skipped without them."""

import shutil

import pytest


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no GPU on this machine")
def test_astra_cuda_is_usable_when_a_gpu_is_present():
    import astra

    assert astra.use_cuda(), "a GPU is present but astra cannot use CUDA"
