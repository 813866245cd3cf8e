"""ophyd devices of operando-stream: stages, beam, detectors, potentiostat (sim and EPICS)."""

__all__: list[str] = []
