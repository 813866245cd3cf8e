"""The application layer: what a user starts.

- :mod:`.cli`: the ``operando`` command.
- :mod:`.config`: the validated configuration of the main job (TOML and ``--set``).
- :mod:`.experiment`: the main job (RunEngine, plans, publishers) and ``analyze``.
- :mod:`.processes`: the recorder, analyses and integration workers as service processes.
- :mod:`.demo`: the synthetic record-and-replay demo.
- :mod:`.bench`: ``operando bench``, the benchmarks under ``benchmarks/``.

May import every layer below it, and ``plans``, ``devices`` and ``simulators``.
"""
