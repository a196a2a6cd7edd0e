"""Opening an intake source once, as one byte stream: a path, standard input ("-"), or an open
binary file; gzip, bzip2 or zstd compressed (by file name or by magic bytes, decoded by pyarrow);
Parquet (by file name or by magic bytes; spooled to a temporary file when it cannot seek); text in
another encoding transcoded to UTF-8 on the fly, block by block.

Nothing is opened or read twice, so a pipe or a redirect works: the first bytes read to tell the
form apart are handed on to the reader, not read again.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.records import count_line_ends

STDIN = "-"
HEAD_BYTES = 1 << 20  # read at once to check the file and find its header and delimiter
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd"}
_SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_CODEC_NAMES = {"gzip": "gzip", "bz2": "bzip2", "zstd": "zstd"}
_UTF8 = ("utf-8", "utf-8-sig")


@dataclass
class Opened:
    """An opened source: Parquet (`parquet`), or CSV text as UTF-8 (`head`, then `read`)."""

    name: str  # how messages name the source
    head: bytes = b""  # the first bytes of the text (a UTF-8 byte-order mark removed)
    read: Callable[[int], bytes] | None = None  # the text after `head`, b"" at the end
    utf8_checked: bool = False  # True when transcoding already proved the text UTF-8
    parquet: pq.ParquetFile | None = None
    _close: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self._close:
            with contextlib.suppress(Exception):
                close()
        self._close.clear()


class _Prefixed(io.RawIOBase):
    """A binary stream whose first bytes were already read (the magic bytes): them, then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(out) :]
            return out
        return self._rest.read(n)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def not_text_message(name: str, encoding: str | None, line: int, byte: int) -> str:
    what = "UTF-8" if encoding is None else encoding
    example = "cp1252" if encoding is None else "utf-8"
    return (
        f"{name}: not {what} text at line {line} (byte 0x{byte:02x}); if the file is in another encoding, "
        f"say which with --encoding (for example --encoding {example})"
    )


class _Transcoder:
    """Another encoding's bytes as UTF-8, decoded incrementally (one decoder for the whole stream)."""

    def __init__(self, read: Callable[[int], bytes], encoding: str, name: str):
        self._read, self.encoding, self.name = read, encoding, name
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._lines, self._after_cr = 0, False

    def read(self, n: int) -> bytes:
        while True:
            raw = self._read(n)
            try:
                text = self._decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as err:
                done = err.object[: err.start].decode(self.encoding, errors="replace").encode()
                line = self._lines + count_line_ends(done, self._after_cr)[0] + 1
                raise IntakeFormatError(
                    not_text_message(self.name, self.encoding, line, err.object[err.start])
                ) from None
            if text or not raw:
                out = text.encode("utf-8")
                self._lines += (counted := count_line_ends(out, self._after_cr))[0]
                self._after_cr = counted[1]
                return out


def _read_fully(read: Callable[[int], bytes], n: int) -> bytes:
    parts, size = [], 0
    while size < n:
        part = read(n - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _open_binary(source, opened: Opened) -> tuple[BinaryIO, str]:
    """The source as a binary file object, and the file name that may say its form."""
    if isinstance(source, str | Path) and str(source) == STDIN:
        opened.name = "standard input"
        return sys.stdin.buffer, ""
    if isinstance(source, str | Path):
        path = Path(source)
        opened.name = str(path)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise IntakeFormatError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise IntakeFormatError(f"{path}: is a directory, not a CSV file") from None
        except OSError as err:
            raise IntakeFormatError(f"{path}: cannot be opened ({err.strerror or err})") from None
        opened._close.append(fh.close)
        return fh, path.name
    fh = getattr(source, "buffer", None) if isinstance(source, io.TextIOBase) else source
    if fh is None or not hasattr(fh, "read"):
        raise IntakeFormatError(f"not an intake source: {type(source).__name__} (give a path, '-' or a binary file)")
    name = getattr(fh, "name", None)
    opened.name = name if isinstance(name, str) else "the input"
    return fh, name if isinstance(name, str) else ""


def _spooled_parquet(fh: BinaryIO, magic: bytes, opened: Opened) -> pq.ParquetFile:
    """Parquet needs random access: a stream that cannot seek is copied to a temporary file first."""
    if fh is not sys.stdin.buffer and fh.seekable():
        with contextlib.suppress(OSError):
            fh.seek(fh.tell() - len(magic))
            return pq.ParquetFile(fh)
    spool = tempfile.TemporaryFile(prefix="intake-", suffix=".parquet")  # noqa: SIM115 (open while read)
    opened._close.append(spool.close)
    spool.write(magic)
    shutil.copyfileobj(fh, spool, 1 << 20)
    spool.seek(0)
    return pq.ParquetFile(spool)


def open_source(source, encoding: str | None = None, head_bytes: int = HEAD_BYTES) -> Opened:
    """Open a path, "-" (standard input) or a binary file object once, and tell its form apart.

    Raises IntakeFormatError (naming the source) when it cannot be opened or decoded.
    """
    opened = Opened(name="the input")
    try:
        return _open(source, encoding, head_bytes, opened)
    except BaseException:
        opened.close()
        raise


def _open(source, encoding: str | None, head_bytes: int, opened: Opened) -> Opened:
    fh, file_name = _open_binary(source, opened)
    name = opened.name
    read_raw = fh.read
    try:
        magic = _read_fully(read_raw, 4)
    except OSError as err:
        raise IntakeFormatError(f"{name}: cannot be read ({err.strerror or err})") from None
    suffix = Path(file_name).suffix.lower()
    if magic == b"PAR1" or suffix == ".parquet":
        try:
            opened.parquet = _spooled_parquet(fh, magic, opened)
        except (pa.ArrowException, OSError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise IntakeFormatError(f"{name}: not a readable Parquet file ({first})") from None
        return opened
    codec = next((c for m, c in _MAGIC.items() if magic.startswith(m)), None) or _SUFFIXES.get(suffix)
    if codec is not None:
        stream = pa.CompressedInputStream(pa.PythonFile(_Prefixed(magic, fh), mode="r"), codec)
        read = _checked(stream.read, f"{name}: not a readable {_CODEC_NAMES[codec]} stream")
    else:
        read = _checked(_Prefixed(magic, fh).read, f"{name}: cannot be read")
    if encoding is not None:
        try:
            canonical = codecs.lookup(encoding).name
        except LookupError:
            raise IntakeFormatError(f"unknown encoding {encoding!r} (try utf-8, cp1252 or latin-1)") from None
        if canonical not in _UTF8:
            read = _Transcoder(read, encoding, name).read
            opened.utf8_checked = True
    head = _read_fully(read, head_bytes)
    opened.head = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    opened.read = read
    return opened


def _checked(read: Callable[[int], bytes], failure: str) -> Callable[[int], bytes]:
    """`read`, with a decompression or I/O failure as one IntakeFormatError line."""

    def checked(n: int) -> bytes:
        try:
            return read(n)
        except (pa.ArrowException, OSError) as err:
            raise IntakeFormatError(f"{failure} ({str(err).splitlines()[0] if str(err) else err})") from None

    return checked
