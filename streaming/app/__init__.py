"""The application layer: what a user starts.

- :mod:`.cli`: the ``operando`` command: its parser and dispatch.
- :mod:`.data_commands`: ``record``, ``replay``, ``info``, ``simulate``.
- :mod:`.service_commands`: ``analyze``, ``consume``, ``distribute``, ``integrate``.
- :mod:`.job_commands`: ``demo`` and ``bench``.
- :mod:`.config`: the validated configuration of the main job (TOML and ``--set``).
- :mod:`.analyses`: the main job's live analyses, configured from its config.
- :mod:`.experiment`: the main job (RunEngine, plans, publishers) and ``analyze``.
- :mod:`.processes`: the recorder, analyses and integration workers as service processes.
- :mod:`.demo`: the synthetic record-and-replay demo.
- :mod:`.bench`: ``operando bench``, the benchmarks under ``benchmarks/``.

May import every layer below it, and ``plans``, ``devices`` and ``simulators``.
"""
