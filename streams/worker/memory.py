"""The heap's free pages handed back to the system now and then (`trim`), so that a worker's RSS is
what it holds rather than what it once held.

The fold's columns grow by a quarter at a time and each growth frees the old copy; glibc keeps
what is freed inside its heap for reuse, and after the first large free it raises its mmap
threshold, so later growths come from the heap too. A recovery's buffers and the first batches of
a fleet leave the same behind. Those pages count in the worker's RSS until malloc reuses them: in a
scratch fold of 50,000 robots x 5 s, 1,644-1,709 B of RSS per robot, 872-879 once `malloc_trim(0)`
had run (3.2 ms, then 0.1 ms with nothing to return). Setting a fixed mmap threshold instead
(`mallopt`) gave 1,152-1,338 B, but the fold took 8.0-8.1 CPU s against 7.0 (one scratch run each,
beside a CI run: a fresh mapping, zeroed, for every large temporary array); a trim every `TRIM_S`
adds nothing to the hot path.

A no-op where the C library has no `malloc_trim` (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

TRIM_S = 10.0
"""How often the worker trims: a growth's or a recovery's garbage is back with the system within this."""


def _malloc_trim() -> Callable[[int], Any] | None:
    try:
        trim: Callable[[int], Any] = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None
    return trim


_MALLOC_TRIM = _malloc_trim()


def trim() -> bool:
    """Return the heap's free pages to the system (glibc's `malloc_trim(0)`: every arena, pages in
    the middle of the heap too); False where the C library cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
