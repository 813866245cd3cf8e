"""Pure processing algorithms: numpy/scipy/numba in, arrays or result dataclasses out.

No sockets, no files, no logging per frame, and never writing into inputs, so that one
function serves a live consumer, a replay and a batch reprocess alike (STYLE.md R2).
"""

__all__: list[str] = []
