"""The worker's heap trim gives freed pages back to the system (glibc), where a free alone does not."""

from __future__ import annotations

import gc
import platform

from streams.worker import memory


def rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_a_trim_returns_the_pages_a_free_left_in_the_heap() -> None:
    assert platform.libc_ver()[0] == "glibc"  # what the worker's images and CI run on
    chunks = [bytes([i % 256]) * 1000 for i in range(60_000)]  # ~60 MB of malloc'd (not pymalloc) blocks
    pin = bytes(1000)  # allocated above them: the heap's top is not free, so a free cannot shrink it
    before = rss()
    del chunks
    gc.collect()
    freed = rss()
    assert memory.trim() is True
    trimmed = rss()
    assert freed > before - 20 * 2**20  # the blocks' pages stayed with the process
    assert trimmed < freed - 40 * 2**20, (before, freed, trimmed)
    del pin  # held to here: it keeps the freed blocks below the heap's top
