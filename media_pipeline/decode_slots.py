"""One whole-size decode at a time per machine, for the formats that cannot decode reduced.

AVIF (libavif/dav1d) and HEIC (libheif) have no scaled decode in any binding we can install,
so a 48 MP source costs 380-450 MiB in the worker child however it is handled afterwards
(bench/images.py). Two of those at once on a 2 GiB media worker come close to its limit.
Above a pixel budget such decodes therefore take an exclusive `flock` on one file in the
machine's temporary directory: every pool process of every worker on the machine (one ECS
task) shares it, so at most one runs at a time and the others wait their turn. The kernel
drops the lock when a process dies, so a killed worker never leaves it held.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "opsqueue-media-whole-decode.lock"


@contextmanager
def whole_decode_slot(
    pixels: int, *, budget_pixels: int, lock_dir: Path | None = None
) -> Iterator[None]:
    """Hold the machine's whole-decode lock while decoding more than `budget_pixels`."""
    if pixels <= budget_pixels:
        yield
        return
    path = Path(lock_dir or tempfile.gettempdir()) / LOCK_NAME
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
