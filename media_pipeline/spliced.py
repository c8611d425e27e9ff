"""A read-only, seekable stream stitched from pieces: bytes of its own and byte ranges of
another stream, read in place (nothing of the source is copied). Used to show a decoder a
PNG without some of its chunks (png_chunks) or an APNG's first frame as a PNG (apng)."""

from __future__ import annotations

import bisect
import io
from typing import BinaryIO


class SplicedStream(io.RawIOBase):
    """`parts` one after another, each bytes or a (start, end) range of `source`."""

    def __init__(self, source: BinaryIO, parts: list[bytes | tuple[int, int]]) -> None:
        super().__init__()
        self._source = source
        self._parts = parts
        self._starts: list[int] = []
        total = 0
        for part in parts:
            self._starts.append(total)
            total += len(part) if isinstance(part, bytes) else part[1] - part[0]
        self._size = total
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = len(buffer)
        done = 0
        # The part holding the position, found by bisection: a file of thousands of hidden
        # chunks is read in as many parts, and a reader asks for a few KiB at a time.
        # Walked by index from there: a slice of the rest would copy it on every read.
        first = max(bisect.bisect_right(self._starts, self._position) - 1, 0)
        for index in range(first, len(self._parts)):
            if done == wanted:
                break
            part = self._parts[index]
            length = len(part) if isinstance(part, bytes) else part[1] - part[0]
            inside = self._position - self._starts[index]
            if not 0 <= inside < length:
                continue
            count = min(length - inside, wanted - done)
            if isinstance(part, bytes):
                data = part[inside : inside + count]
            else:
                self._source.seek(part[0] + inside)
                data = self._source.read(count)
            buffer[done : done + len(data)] = data
            done += len(data)
            self._position += len(data)
            if len(data) < count:  # the source ends early: so does the view
                break
        return done
