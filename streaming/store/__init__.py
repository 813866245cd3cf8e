"""The storage layer: one HDF5 file per run, the recorder that writes it, and what reads it.

- :mod:`.chunks`: frame compression and the direct chunk reads and writes.
- :mod:`.filenames`: the names of a run's file and of the analysis files beside it.
- :mod:`.framestreams`: one frame stream's datasets in a run file and their writer.
- :mod:`.runfile`: the run file's layout and its writer.
- :mod:`.runreader`: reading a recorded run (documents, frames, summaries).
- :mod:`.recorderconfig`: the recorder's settings.
- :mod:`.routing`: which run each message belongs to; frames waiting for their run's start.
- :mod:`.recorder`: the system of record, subscribed to both channels.
- :mod:`.storage`: a full disk under the recorder, and what a run lost to it.
- :mod:`.replay`: a recorded run published again through the same channels.

Imports the wire layer and :mod:`streaming.errors`, nothing above.
"""

from .recorder import Recorder, RecorderConfig, RecorderThread, run_file_name
from .replay import ReplayConfig, ReplayStats, replay
from .runfile import RunFileWriter
from .runreader import RunFileReader, RunSummary

__all__ = [
    "Recorder",
    "RecorderConfig",
    "RecorderThread",
    "ReplayConfig",
    "ReplayStats",
    "RunFileReader",
    "RunFileWriter",
    "RunSummary",
    "replay",
    "run_file_name",
]
