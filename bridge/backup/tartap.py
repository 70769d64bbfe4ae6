"""Read named small members out of a tar stream as it flows past, without storing the stream."""

from __future__ import annotations

BLOCK = 512


class TarTap:
    """Feed tar bytes in order; members named in wanted (up to max_size bytes) end up in .members."""

    def __init__(self, wanted: tuple[str, ...], *, max_size: int = 16 * 1024 * 1024) -> None:
        self.wanted = set(wanted)
        self.max_size = max_size
        self.members: dict[str, bytes] = {}
        self._buf = bytearray()
        self._skip = 0  # bytes of member data (plus padding) still to pass
        self._take: tuple[str, int] | None = None
        self._taken = bytearray()
        self._done = False

    def feed(self, data: bytes) -> None:
        """Consume the next bytes of the stream."""
        self._buf += data
        while not self._done:
            if self._skip:
                n = min(self._skip, len(self._buf))
                if not n:
                    return
                if self._take is not None:
                    self._taken += self._buf[:n]
                del self._buf[:n]
                self._skip -= n
                if not self._skip and self._take is not None:
                    name, size = self._take
                    self.members[name] = bytes(self._taken[:size])
                    self._take, self._taken = None, bytearray()
                continue
            if len(self._buf) < BLOCK:
                return
            header = bytes(self._buf[:BLOCK])
            del self._buf[:BLOCK]
            if header == b"\0" * BLOCK:
                self._done = True
                return
            name = header[:100].split(b"\0", 1)[0].decode(errors="replace")
            prefix = header[345:500].split(b"\0", 1)[0].decode(errors="replace")
            if prefix:
                name = f"{prefix}/{name}"
            size_field = header[124:136].split(b"\0", 1)[0].strip() or b"0"
            size = int(size_field, 8)
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
            self._skip = padded
            if name in self.wanted and size <= self.max_size:
                self._take = (name, size)
