"""Build hostile and ordinary layer tars entry by entry."""
from __future__ import annotations

import io
import tarfile


class Tar:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.t = tarfile.open(  # noqa: SIM115 (closed by bytes())
            fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _add(self, ti: tarfile.TarInfo, data: bytes | None = None) -> Tar:
        ti.mtime = 1_600_000_000
        self.t.addfile(ti, io.BytesIO(data) if data is not None else None)
        return self

    def file(self, name: str, data: bytes = b"x", mode: int = 0o644, uid: int = 0) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.uid, ti.gid = len(data), mode, uid, uid
        return self._add(ti, data)

    def dir(self, name: str, mode: int = 0o755) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode = tarfile.DIRTYPE, mode
        return self._add(ti)

    def symlink(self, name: str, target: str, uid: int = 0) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.uid, ti.gid = tarfile.SYMTYPE, target, uid, uid
        return self._add(ti)

    def hardlink(self, name: str, target: str) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = tarfile.LNKTYPE, target
        return self._add(ti)

    def device(self, name: str, kind: bytes, major: int, minor: int) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type, ti.devmajor, ti.devminor, ti.mode = kind, major, minor, 0o666
        return self._add(ti)

    def bytes(self) -> bytes:
        self.t.close()
        return self.buf.getvalue()
