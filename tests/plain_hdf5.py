"""Read an HDF5 file as any reader would: plain h5py in a fresh process, no hdf5plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_READ_ALL = """
import json, sys
import h5py
found = {}
def read(name, item):
    if isinstance(item, h5py.Dataset):
        data = item[()]
        found[name] = [list(item.shape), item.compression, float(data.sum()) if data.dtype.kind in "fiub" else 0.0]
with h5py.File(sys.argv[1], "r") as file:
    file.visititems(read)
print(json.dumps(found))
"""


def read_without_plugins(path: Path) -> dict[str, list]:
    """Every dataset of ``path`` read by plain h5py in a new process (no filter plugin on the
    path): name -> [shape, compression, sum]. Fails the caller's test with h5py's error if a
    dataset needs a plugin."""
    env = {key: value for key, value in os.environ.items() if key != "HDF5_PLUGIN_PATH"}
    done = subprocess.run([sys.executable, "-c", _READ_ALL, str(path)], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)
