"""Reading files that other people made: only regular files, never more than a known size.

Every path that reads a file a user, a student or an archive chose goes through here, so that
a FIFO (which blocks forever), a device such as ``/dev/zero`` (which never ends) or a symlink
pointing out of its folder is refused before a byte is read, and a file that grows while it is
read cannot push memory past the limit.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

_UMASK = os.umask(0)  # read once: os.umask can only be read by setting it
os.umask(_UMASK)


class FileRefused(ValueError):
    """The path is not a regular file of an acceptable size; the message says why."""


def read_regular(path: str | Path, max_bytes: int, what: str = "file", *, inside: str | Path | None = None) -> bytes:
    """Read ``path`` whole, refusing anything but a regular file of at most ``max_bytes`` bytes.

    With ``inside``, the path (after following symlinks) must also lie within that folder.
    The file is opened without blocking and checked on the open descriptor, so a file swapped
    for a FIFO between a check and the open cannot hang the caller.
    """
    path = Path(path)
    if inside is not None:
        try:
            real, root = path.resolve(strict=True), Path(inside).resolve(strict=True)
        except (OSError, RuntimeError) as err:
            raise FileRefused(f"cannot read {what} {path}: {getattr(err, 'strerror', None) or err}") from None
        if real != root and root not in real.parents:
            raise FileRefused(f"{what} {path} points outside its folder; refused")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise FileRefused(f"cannot read {what} {path}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{what} {path} is not a regular file (a device, a pipe or a folder); refused")
        if info.st_size > max_bytes:
            raise FileRefused(f"{what} {path} is {info.st_size / 1e6:.1f} MB; at most {max_bytes / 1e6:.1f} MB is read")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise FileRefused(f"{what} {path} is larger than {max_bytes / 1e6:.1f} MB; refused")
        return b"".join(chunks)
    except OSError as err:
        raise FileRefused(f"cannot read {what} {path}: {err.strerror}") from None
    finally:
        os.close(fd)


def shown(text: object, limit: int = 200) -> str:
    """Text from a file or an archive, made safe to print on a terminal: control characters escaped.

    ``"a\\x1b[2Jb"`` prints as ``a\\x1b[2Jb`` literally, so a hostile name cannot clear the screen or
    rewrite earlier lines; the result is at most about ``limit`` characters.
    """
    s = str(text)
    out = []
    for ch in s[:limit]:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("…" if len(s) > limit else "")



def write_synced_temp(folder: str | Path, data: bytes, prefix: str, suffix: str = ".tmp") -> str:
    """Write ``data`` to a new temporary file in ``folder``, flushed to disk; its path, ready to be renamed
    into place. Nothing is left behind if the write fails."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a saved file should look like any other
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def sync_folder(folder: str | Path) -> None:
    """Make renames in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
