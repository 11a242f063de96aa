"""Readers: turn a file into a stream of records (dicts of raw values) with their location.

Every reader streams: it holds one line, one CSV record, one Parquet batch or one WRENCH record
at a time, so memory stays flat in the file's size. Problems (encoding, malformed JSON, wrong
types) go to the shared :class:`~apps.datasets.pipeline.exceptions.Problems` collector.
"""

import codecs
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from apps.datasets.pipeline.exceptions import Problems

csv.field_size_limit(64 * 1024 * 1024)

PARQUET_BATCH_ROWS = 8192
JSON_CHUNK_BYTES = 1 << 20
MAX_JSON_VALUE_CHARS = 64 * 1024 * 1024


TOO_DEEP = "malformed JSON: nested too deeply"
MIXED_LINE_ENDINGS = (
    "a carriage return (CR) inside an unquoted field: the file mixes line endings "
    "(CR, LF, CR LF); save it with one kind of line ending, or quote fields that hold one"
)


def csv_reason(exc: Exception) -> str:
    """What a ``csv.Error`` means, in words (Python's own message names no file or line)."""
    text = str(exc)
    if "new-line character seen in unquoted field" in text:
        return MIXED_LINE_ENDINGS
    return f"malformed CSV: {text}"


class StopReading(Exception):
    """Internal: the current file cannot be read further (its problem is already recorded)."""


@dataclass(slots=True)
class Record:
    """One raw record and where it came from."""

    file: str
    fields: dict
    line: int | None = None
    row: int | None = None

    def where(self, column: str | int | None = None) -> dict:
        out = {"line": self.line, "row": self.row}
        if column is not None:
            out["column"] = column
        return {k: v for k, v in out.items() if v is not None}


class ByteCounter:
    """Bytes read so far across the files of one import (for progress)."""

    def __init__(self, total: int):
        self.total = max(total, 1)
        self.done = 0

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0)


def check_file(path: Path, name: str, problems: Problems, max_bytes: int) -> bool:
    """Size and emptiness checks before reading; False when the file must not be read."""
    size = path.stat().st_size
    if size > max_bytes:
        problems.add(
            name,
            f"the file is {size:,} bytes, over the import limit of {max_bytes:,} bytes "
            "(FRUGAL_IMPORT_MAX_BYTES)",
        )
        return False
    if size == 0:
        problems.add(name, "the file is empty")
        return False
    return True


def _encoding_problem(problems: Problems, name: str, raw: bytes, start: int, line: int):
    """Report the first non-UTF-8 byte ``raw[start]`` of a line (``raw`` starts the line)."""
    column = len(raw[:start].decode("utf-8", errors="replace")) + 1
    problems.add(
        name,
        f"not valid UTF-8 (byte 0x{raw[start]:02x}); save the file with UTF-8 encoding",
        line=line,
        column=column,
    )


def iter_lines(path: Path, name: str, problems: Problems, counter: ByteCounter):
    """Decoded lines (with their 1-based number); stops at the first byte that is not UTF-8."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            counter.done += len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                _encoding_problem(problems, name, raw, exc.start, number)
                return
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield number, line


def read_jsonl(
    path: Path, name: str, problems: Problems, counter: ByteCounter, id_key: str = "id"
) -> Iterator[Record]:
    """One record per line. Lines are parsed by orjson straight from their bytes (it checks
    the UTF-8 too; ~4× faster than decoding and ``json.loads``); a line it refuses goes
    through :func:`_jsonl_value` instead, which says what is wrong exactly as ``json`` does
    and accepts what ``json`` accepts beyond orjson (NaN, a byte order mark). orjson reads an
    integer beyond 64 bits as a float: a line whose ``id_key`` came out a float is read again
    by ``json``, which keeps such an id exact (elsewhere the difference only words an error)."""
    fast_loads = orjson.loads
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            counter.done += len(raw)
            try:
                value = fast_loads(raw)
            except orjson.JSONDecodeError:
                value = _NOT_PARSED
            else:
                if type(value) is dict and type(value.get(id_key)) is float:
                    value = _NOT_PARSED
            if value is _NOT_PARSED:
                try:
                    value = _jsonl_value(raw, number, name, problems)
                except StopReading:
                    return
                if value is _SKIP:
                    continue
            if type(value) is not dict:
                problems.add(name, "expected a JSON object on each line", line=number)
                continue
            yield Record(name, value, line=number)


_NOT_PARSED = object()
_SKIP = object()  # a blank or malformed line (reported): no record


def _jsonl_value(raw: bytes, number: int, name: str, problems: Problems):
    """The value of a JSONL line orjson refused, or ``_SKIP``; raises :class:`StopReading`
    at the first byte that is not UTF-8 (reported)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _encoding_problem(problems, name, raw, exc.start, number)
        raise StopReading from None
    if number == 1 and line.startswith("\ufeff"):
        line = line[1:]
    if not line.strip():
        return _SKIP
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        problems.add(name, f"malformed JSON: {exc.msg}", line=number, column=exc.colno)
        return _SKIP
    except RecursionError:
        problems.add(name, TOO_DEEP, line=number)
        return _SKIP


def sniff_delimiter(path: Path) -> str:
    """The delimiter of a delimited text file: by extension, else sniffed from its start."""
    suffix = path.suffix.lower()
    if suffix in {".tsv", ".tab"}:
        return "\t"
    with open(path, "rb") as handle:
        sample = handle.read(64 * 1024).decode("utf-8", errors="replace")
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return "\t" if sample.count("\t") > sample.count(",") else ","


def read_csv_header(
    path: Path, name: str, problems: Problems, delimiter: str, counter: ByteCounter | None = None
) -> tuple[list[str], Iterator[list[str]], object] | None:
    """The header and an iterator over the remaining records (``None`` when unreadable)."""
    lines = iter_lines(path, name, problems, counter or ByteCounter(1))
    reader = csv.reader((line for _, line in lines), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        if not problems:
            problems.add(name, "the file is empty")
        return None
    except csv.Error as exc:
        problems.add(name, csv_reason(exc), line=reader.line_num)
        return None
    header = [h.strip() for h in header]
    if not any(header):
        problems.add(name, "the header line is empty", line=1)
        return None
    return header, reader, reader


def read_csv(
    path: Path, name: str, problems: Problems, counter: ByteCounter, delimiter: str
) -> Iterator[Record]:
    """Records of a CSV/TSV file as ``{header name: value}``; the first line is the header."""
    opened = read_csv_header(path, name, problems, delimiter, counter)
    if opened is None:
        return
    header, reader, _ = opened
    width = len(header)
    row = 0
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(name, csv_reason(exc), line=reader.line_num)
            return
        row += 1
        start, line = line, reader.line_num + 1
        if not values or (len(values) == 1 and not values[0].strip()):
            continue
        if len(values) != width:
            problems.add(
                name,
                f"the row has {len(values)} fields but the header has {width}",
                line=start,
                row=row,
            )
            continue
        yield Record(name, dict(zip(header, values)), line=start, row=row)


def open_parquet(path: Path, name: str, problems: Problems):
    """The ``ParquetFile``, or ``None`` (with a problem) when the file is not Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).replace(str(path), name)  # never the server's path
        problems.add(name, f"not a readable Parquet file ({reason})")
        return None


def read_parquet(
    parquet_file,
    name: str,
    columns: list[str],
    counter: ByteCounter,
    file_bytes: int,
    problems: Problems | None = None,
) -> Iterator[Record]:
    """Records of a Parquet file, read one batch at a time (rows are 1-based); a damaged
    file (truncated, corrupt pages) is a problem at the row where reading stopped."""
    import pyarrow as pa

    total = max(parquet_file.metadata.num_rows, 1)
    start = counter.done
    row = 0
    batches = parquet_file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            if problems is None:
                raise
            problems.add(name, f"the Parquet file is damaged ({exc})", row=row + 1)
            return
        for fields in batch.to_pylist():
            row += 1
            yield Record(name, fields, row=row)
        counter.done = start + int(file_bytes * row / total)


_WS = re.compile(r"[ \t\n\r]*")


class _JsonObjectStream:
    """Streams the ``key: value`` items of one top-level JSON object, a buffer at a time."""

    def __init__(self, handle, name: str, problems: Problems, counter: ByteCounter):
        self.handle = handle
        self.name = name
        self.problems = problems
        self.counter = counter
        self.decoder = json.JSONDecoder()
        self.utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # line number of buf[0]
        self.mark = (0, 1)  # (index, line) cache for line_at
        self.raw_tail_lines = 0
        self.first_chunk = True

    def line_at(self, index: int) -> int:
        mark_index, mark_line = self.mark
        if index < mark_index:
            mark_index, mark_line = 0, self.line_base
        line = mark_line + self.buf.count("\n", mark_index, index)
        self.mark = (index, line)
        return line

    def column_at(self, index: int) -> int:
        return index - (self.buf.rfind("\n", 0, index) + 1) + 1

    def fill(self) -> None:
        raw = self.handle.read(JSON_CHUNK_BYTES)
        self.counter.done += len(raw)
        try:
            text = self.utf8.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            line = self.line_at(len(self.buf)) + raw[: exc.start].count(b"\n")
            line_start = raw.rfind(b"\n", 0, exc.start) + 1
            _encoding_problem(
                self.problems, self.name, raw[line_start:], exc.start - line_start, line
            )
            raise StopReading from None
        if not raw:
            self.eof = True
        if self.first_chunk:
            text = text.removeprefix("\ufeff")  # a byte order mark before the JSON
            self.first_chunk = False
        line = self.line_at(self.pos)
        self.buf = self.buf[self.pos :] + text
        self.line_base = line
        self.pos = 0
        self.mark = (0, line)

    def skip_ws(self) -> None:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or self.eof:
                return
            self.fill()

    def fail(self, reason: str, index: int | None = None) -> None:
        index = self.pos if index is None else index
        self.problems.add(self.name, reason, line=self.line_at(index), column=self.column_at(index))
        raise StopReading

    def expect(self, char: str) -> bool:
        self.skip_ws()
        if self.pos < len(self.buf) and self.buf[self.pos] == char:
            self.pos += 1
            return True
        return False

    def value(self):
        self.skip_ws()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except RecursionError:
                self.fail(TOO_DEEP)
            except json.JSONDecodeError as exc:
                if not self.eof and len(self.buf) - self.pos < MAX_JSON_VALUE_CHARS:
                    self.fill()
                    continue
                self.fail(f"malformed JSON: {exc.msg}", exc.pos)
            if end == len(self.buf) and not self.eof:
                self.fill()  # a number may continue in the next chunk
                continue
            self.pos = end
            return value

    def array_items(self) -> Iterator[tuple[int, object]]:
        """``(line, value)`` for each element of a top-level JSON array."""
        self.fill()
        if not self.expect("["):
            if self.pos >= len(self.buf):
                self.problems.add(self.name, "the file is empty")
                raise StopReading
            self.fail("expected a JSON array of records ([{...}, ...])")
        if self.expect("]"):
            return
        while True:
            self.skip_ws()
            line = self.line_at(self.pos)
            yield line, self.value()
            if self.expect(","):
                continue
            if self.expect("]"):
                break
            self.fail("malformed JSON: expected ',' or ']'")
        self.skip_ws()
        if self.pos < len(self.buf):
            self.fail("malformed JSON: extra data after the array")

    def items(self) -> Iterator[tuple[int, str, object]]:
        self.fill()
        if not self.expect("{"):
            if self.pos >= len(self.buf):
                self.problems.add(self.name, "the file is empty")
                raise StopReading
            self.fail("expected a JSON object of records ({id: record, ...})")
        if self.expect("}"):
            return
        while True:
            self.skip_ws()
            line = self.line_at(self.pos)
            if self.pos < len(self.buf) and self.buf[self.pos] != '"':
                self.fail("malformed JSON: expected a string key")
            key = self.value()
            if not self.expect(":"):
                self.fail("malformed JSON: expected ':' after the key")
            value = self.value()
            yield line, key, value
            if self.expect(","):
                continue
            if self.expect("}"):
                break
            self.fail("malformed JSON: expected ',' or '}'")
        self.skip_ws()
        if self.pos < len(self.buf):
            self.fail("malformed JSON: extra data after the object")


def read_json_object(
    path: Path, name: str, problems: Problems, counter: ByteCounter
) -> Iterator[tuple[int, str, object]]:
    """``(line, key, value)`` for each item of a file holding one JSON object, streamed."""
    with open(path, "rb") as handle:
        stream = _JsonObjectStream(handle, name, problems, counter)
        try:
            yield from stream.items()
        except StopReading:
            return


def read_json_array(path: Path, name: str, problems: Problems, counter: ByteCounter):
    """Records of a file holding one JSON array of objects (Frugal's ``json`` export), streamed."""
    with open(path, "rb") as handle:
        stream = _JsonObjectStream(handle, name, problems, counter)
        try:
            for line, value in stream.array_items():
                if not isinstance(value, dict):
                    problems.add(name, "expected a JSON object for each record", line=line)
                    continue
                yield Record(name, value, line=line)
        except StopReading:
            return
