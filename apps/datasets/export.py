"""Dataset export: the project's examples as JSON, JSONL, CSV, Parquet or a WRENCH zip, streamed.

Rows are read with a server-side cursor (PostgreSQL) or in chunks (elsewhere) and written out a
chunk at a time, so memory stays flat in the dataset's size. JSON columns are fetched as text
and spliced into the output unparsed. Each row carries::

    id, text, split, entities, gold_label, gold_label_name, label, label_name, confidence,
    source, version, votes

Labels are indexes into the project's labels, with their names alongside; votes are lists of
label indexes per rule source, -1 = abstain. The WRENCH zip holds ``train.json`` (pool),
``valid.json`` (dev), ``test.json`` (test) and ``label.json``; a WRENCH record's ``label`` is
the gold label, else the current label, else -1, and its ``weak_labels`` are the ``external``
votes followed by any other sources' votes.
"""

import csv
import io
import json
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Case, F, Q, TextField, Value, When
from django.db.models.functions import Cast
from django.utils.text import slugify

from apps.datasets.models import Example, LabelSource, Split
from apps.projects.models import Project

EXPORT_FORMATS = ("jsonl", "json", "csv", "parquet", "wrench")
CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "wrench": "application/zip",
}
EXTENSIONS = {"jsonl": "jsonl", "json": "json", "csv": "csv", "parquet": "parquet", "wrench": "zip"}
CHUNK_ROWS = 5000
FLUSH_BYTES = 256 * 1024
PARQUET_ROW_GROUP = 50_000
SPLIT_ALIASES = {"train": "pool", "valid": "dev", "validation": "dev"}
WRENCH_SPLITS = (
    ("train", Split.POOL.value),
    ("valid", Split.DEV.value),
    ("test", Split.TEST.value),
)
ROW_FIELDS = (
    "external_id",
    "text",
    "split",
    "entities_text",
    "gold_label",
    "label",
    "confidence",
    "label_source",
    "label_version",
    "votes_text",
)
CSV_HEADER = [
    "id",
    "text",
    "split",
    "gold_label",
    "gold_label_name",
    "label",
    "label_name",
    "confidence",
    "source",
    "version",
    "entities",
    "votes",
]


@dataclass(frozen=True)
class ExportFilters:
    split: str | None = None
    label: int | None = None
    gold_label: int | None = None
    min_confidence: float | None = None
    source: str | None = None
    # fill=student: pool rows without a label get the serving distilled student's prediction
    fill_student: bool = False

    def describe(self) -> str:
        parts = [self.split or ""]
        if self.label is not None:
            parts.append(f"label{self.label}")
        if self.gold_label is not None:
            parts.append(f"gold{self.gold_label}")
        if self.source:
            parts.append(self.source)
        if self.fill_student:
            parts.append("student")
        return "-".join(p for p in parts if p)


def _label_index(project: Project, raw: str, name: str) -> int:
    labels = list(project.labels)
    value = raw.strip()
    if value in labels:
        return labels.index(value)
    lowered = [label.lower() for label in labels]
    if lowered.count(value.lower()) == 1:
        return lowered.index(value.lower())
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(labels):
        return int(value)
    raise ValidationError({name: f"unknown label '{value}'; the labels are {', '.join(labels)}"})


def parse_filters(*, project: Project, params) -> ExportFilters:
    """Filters from query parameters (split, label, gold_label, min_confidence, source, and
    fill=student: unlabeled pool rows get the serving distilled student's prediction)."""
    split = (params.get("split") or "").strip().lower() or None
    if split is not None:
        split = SPLIT_ALIASES.get(split, split)
        if split not in {s.value for s in Split}:
            raise ValidationError({"split": f"unknown split '{split}' (pool, dev or test)"})
    label = params.get("label") or None
    gold = params.get("gold_label") or None
    min_confidence = params.get("min_confidence") or None
    if min_confidence is not None:
        try:
            min_confidence = float(min_confidence)
        except ValueError:
            raise ValidationError({"min_confidence": "must be a number"}) from None
        if math.isnan(min_confidence) or not 0 <= min_confidence <= 1:
            raise ValidationError({"min_confidence": "must be between 0 and 1"})
    source = (params.get("source") or "").strip().lower() or None
    if source is not None:
        if source == "none":
            source = ""
        valid = {s.value for s in LabelSource}
        if source not in valid:
            raise ValidationError({"source": "unknown source; use gold, rules, model or none"})
    fill = (params.get("fill") or "").strip().lower()
    if fill not in ("", "student"):
        raise ValidationError({"fill": "use fill=student to label unlabeled pool rows"})
    return ExportFilters(
        fill_student=fill == "student",
        split=split,
        label=None if label is None else _label_index(project, label, "label"),
        gold_label=None if gold is None else _label_index(project, gold, "gold_label"),
        min_confidence=min_confidence,
        source=source,
    )


def _export_queryset(*, project: Project, filters: ExportFilters, split: str | None = None):
    """``ROW_FIELDS`` of the filtered examples in id order, as a ``values_list`` queryset."""
    queryset = Example.objects.filter(project=project)
    split = split or filters.split
    if split:
        queryset = queryset.filter(split=split)
    if filters.label is not None:
        queryset = queryset.filter(label=filters.label)
    if filters.gold_label is not None:
        queryset = queryset.filter(gold_label=filters.gold_label)
    if filters.min_confidence is not None:
        queryset = queryset.filter(confidence__gte=filters.min_confidence)
    if filters.source is not None:
        queryset = queryset.filter(label_source=filters.source)
    queryset = queryset.order_by("id").annotate(
        entities_text=Cast("entities", TextField()), votes_text=Cast("votes", TextField())
    )
    if not filters.fill_student:
        return queryset.values_list(*ROW_FIELDS)
    # Unlabeled pool rows take the serving student's prediction (apps.distill Prediction).
    new = Q(split=Split.POOL, label__isnull=True, student_prediction__isnull=False)
    queryset = queryset.annotate(
        fill_label=Case(When(new, then=F("student_prediction__label")), default=F("label")),
        fill_confidence=Case(
            When(new, then=F("student_prediction__confidence")), default=F("confidence")
        ),
        fill_source=Case(When(new, then=Value("model")), default=F("label_source")),
        fill_version=Case(When(new, then=Value("distilled student")), default=F("label_version")),
    )
    fields = {
        "label": "fill_label",
        "confidence": "fill_confidence",
        "label_source": "fill_source",
        "label_version": "fill_version",
    }
    return queryset.values_list(*(fields.get(f, f) for f in ROW_FIELDS))


def export_rows(*, project: Project, filters: ExportFilters, split: str | None = None):
    """Tuples of ROW_FIELDS in id order, fetched a chunk at a time."""
    queryset = _export_queryset(project=project, filters=filters, split=split)
    return queryset.iterator(chunk_size=CHUNK_ROWS)


def export_row_chunks(*, project: Project, filters: ExportFilters, rows: int) -> Iterator[list]:
    """Lists of up to ``rows`` tuples of ROW_FIELDS in id order, straight from the cursor.

    For the columnar writer, which wants whole chunks anyway: ``fetchmany`` on the
    queryset's own SQL skips the per-row generator of ``QuerySet.iterator`` (~1 s per million
    rows). The fields need no conversion from what the database driver returns (texts,
    integers, floats; the JSON columns are cast to text in SQL).
    """
    queryset = _export_queryset(project=project, filters=filters)
    sql, params = queryset.query.sql_with_params()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(rows):
            yield chunk


def _json_or_null(text: str | None) -> str:
    # A JSON column holding JSON null comes back as the text "null"; SQL NULL as None.
    return "null" if text is None else text


def _names(project: Project) -> list[str]:
    return [json.dumps(str(name)) for name in project.labels]


def _name_of(names: list[str], index) -> str:
    if index is None or not 0 <= index < len(names):
        return "null"
    return names[index]


class _SmallStrings(dict):
    def __missing__(self, key: str) -> str:
        value = self[key] = encode_basestring_ascii(key)
        return value


def _jsonl_lines(project: Project, rows) -> Iterator[str]:
    dumps = encode_basestring_ascii  # json.dumps of a str, without its Python-level overhead
    small = _SmallStrings()  # source and version repeat: quote each distinct value once
    names = _names(project)
    for ext_id, text, split, ents, gold, label, conf, source, version, votes in rows:
        yield (
            f'{{"id": {dumps(ext_id)}, "text": {dumps(text)}, "split": "{split}", '
            f'"entities": {_json_or_null(ents)}, '
            f'"gold_label": {"null" if gold is None else gold}, '
            f'"gold_label_name": {_name_of(names, gold)}, '
            f'"label": {"null" if label is None else label}, '
            f'"label_name": {_name_of(names, label)}, '
            f'"confidence": {"null" if conf is None else repr(float(conf))}, '
            f'"source": {small[source]}, "version": {small[version]}, '
            f'"votes": {_json_or_null(votes)}}}'
        )


def _batched(pieces: Iterator[str], head: str = "", sep: str = "\n", tail: str = "\n"):
    """Join pieces into ~FLUSH_BYTES chunks of UTF-8 bytes."""
    buffer: list[str] = [head] if head else []
    size = len(head)
    first = True
    for piece in pieces:
        if not first:
            buffer.append(sep)
        first = False
        buffer.append(piece)
        size += len(piece) + 1
        if size >= FLUSH_BYTES:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    buffer.append(tail)
    yield "".join(buffer).encode()


def stream_jsonl(*, project: Project, filters: ExportFilters) -> Iterator[bytes]:
    lines = _jsonl_lines(project, export_rows(project=project, filters=filters))
    first = next(lines, None)
    if first is None:
        yield b""
        return
    yield from _batched(_chain(first, lines))


def stream_json(*, project: Project, filters: ExportFilters) -> Iterator[bytes]:
    lines = _jsonl_lines(project, export_rows(project=project, filters=filters))
    first = next(lines, None)
    if first is None:
        yield b"[]\n"
        return
    yield from _batched(_chain(first, lines), head="[\n", sep=",\n", tail="\n]\n")


def _chain(first, rest):
    yield first
    yield from rest


# A cell a spreadsheet would run as a formula begins with = + - @, a tab or a carriage return.
# Cells that begin with quotes and then one of those get one more quote too, so that Frugal's
# CSV import can take exactly one off again (see restore_formula): the round trip is exact.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_NEUTRALIZED = re.compile(r"'+[=+\-@\t\r]")


def neutralize_formula(value: str) -> str:
    """``'`` before a cell a spreadsheet would run as a formula (OWASP's advice against CSV
    injection): ``=HYPERLINK(...)`` is exported as ``'=HYPERLINK(...)``."""
    return "'" + value if _FORMULA.match(value) else value


def restore_formula(value: str) -> str:
    """The inverse of :func:`neutralize_formula` (for re-importing Frugal's own CSV export)."""
    return value[1:] if _NEUTRALIZED.match(value) else value


def _keep(value: str) -> str:
    return value


def stream_csv(
    *, project: Project, filters: ExportFilters, csv_raw: bool = False
) -> Iterator[bytes]:
    """CSV rows; text cells that would run as spreadsheet formulas are neutralized unless
    ``csv_raw`` (programs that want the exact values)."""
    cell = _keep if csv_raw else neutralize_formula
    labels = [cell(str(label)) for label in project.labels]

    def name(index):
        return labels[index] if index is not None and 0 <= index < len(labels) else ""

    buffer = io.StringIO()
    # CRLF, as RFC 4180 says: then a carriage return inside a cell is quoted too.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for ext_id, text, split, ents, gold, label, conf, source, version, votes in export_rows(
        project=project, filters=filters
    ):
        writer.writerow(
            (
                cell(ext_id),
                cell(text),
                split,
                "" if gold is None else gold,
                name(gold),
                "" if label is None else label,
                name(label),
                "" if conf is None else repr(float(conf)),
                source,
                cell(version),
                "" if ents is None or ents == "null" else ents,
                "" if votes is None or votes == "null" else votes,
            )
        )
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


class _Drain:
    """A write-only file whose bytes are taken out as they come (streaming zip and Parquet).

    It has ``tell`` but no ``seek``: zipfile then writes data descriptors instead of seeking.
    """

    def __init__(self):
        self._parts: list[bytes] = []
        self._written = 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts = []
        return data


def stream_parquet(*, project: Project, filters: ExportFilters) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("split", pa.string()),
            ("gold_label", pa.int32()),
            ("gold_label_name", pa.string()),
            ("label", pa.int32()),
            ("label_name", pa.string()),
            ("confidence", pa.float64()),
            ("source", pa.string()),
            ("version", pa.string()),
            ("entities", pa.string()),
            ("votes", pa.string()),
        ]
    )
    labels = [str(name) for name in project.labels]
    label_names = pa.array(labels, pa.string())
    sink = _Drain()
    # Dictionary-encode only the low-cardinality columns: trying it on texts costs time.
    low_cardinality = ["split", "gold_label_name", "label_name", "source", "version"]
    writer = pq.ParquetWriter(sink, schema, compression="snappy", use_dictionary=low_cardinality)
    chunks = export_row_chunks(project=project, filters=filters, rows=PARQUET_ROW_GROUP)
    try:
        for chunk in chunks:
            ids, texts, splits, ents, gold, label, conf, source, version, votes = zip(*chunk)
            gold_array = pa.array(gold, pa.int32())
            label_array = pa.array(label, pa.int32())
            table = pa.Table.from_arrays(
                [
                    pa.array(ids, pa.string()),
                    pa.array(texts, pa.string()),
                    pa.array(splits, pa.string()),
                    gold_array,
                    _names_for(label_names, gold_array),
                    label_array,
                    _names_for(label_names, label_array),
                    pa.array(conf, pa.float64()),
                    pa.array(source, pa.string()),
                    pa.array(version, pa.string()),
                    pa.array([None if e == "null" else e for e in ents], pa.string()),
                    pa.array([None if v == "null" else v for v in votes], pa.string()),
                ],
                schema=schema,
            )
            writer.write_table(table)
            del table, chunk
            yield sink.take()
    finally:
        chunks.close()  # a client that stops reading closes the cursor now
        writer.close()
    yield sink.take()


def _names_for(names, indexes):
    """Label names for an int array of indexes (nulls and out-of-range indexes give null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(names) == 0:
        return pa.nulls(len(indexes), pa.string())
    valid = pc.and_(pc.greater_equal(indexes, 0), pc.less(indexes, len(names)))
    safe = pc.if_else(valid, indexes, pa.scalar(None, pa.int32()))
    return pc.take(names, safe)


def _wrench_record(key: str, text: str, ents, gold, label, votes) -> str:
    data = {"text": text}
    entities = json.loads(ents) if ents not in (None, "null") else None
    if entities and len(entities) >= 2:
        first, second = entities[0], entities[1]
        data.update(
            entity1=first.get("text", text[first["start"] : first["end"]]),
            entity2=second.get("text", text[second["start"] : second["end"]]),
            span1=[first["start"], first["end"]],
            span2=[second["start"], second["end"]],
        )
    weak: list[int] = []
    if votes not in (None, "null"):
        sources = json.loads(votes) or {}
        for source in sorted(sources, key=lambda s: (s != "external", s)):
            weak.extend(sources[source])
    value = gold if gold is not None else (label if label is not None else -1)
    return f"{json.dumps(key)}: " + json.dumps({"data": data, "label": value, "weak_labels": weak})


def stream_wrench(*, project: Project, filters: ExportFilters) -> Iterator[bytes]:
    sink = _Drain()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        names = {str(i): str(name) for i, name in enumerate(project.labels)}
        archive.writestr("label.json", json.dumps(names))
        for stem, split in WRENCH_SPLITS:
            wanted = filters.split is None or filters.split == split
            with archive.open(f"{stem}.json", "w", force_zip64=True) as member:
                member.write(b"{")
                first = True
                used: set[str] = set()
                rows = export_rows(project=project, filters=filters, split=split) if wanted else ()
                for ext_id, text, _, ents, gold, label, _, _, _, votes in rows:
                    key = ext_id.removeprefix(f"{stem}:")
                    if key in used:
                        key = ext_id if ext_id not in used else f"{ext_id}#{len(used)}"
                    used.add(key)
                    record = _wrench_record(key, text, ents, gold, label, votes)
                    member.write((("\n" if first else ",\n") + record).encode())
                    first = False
                    if sink.tell() and len(sink._parts) > 64:
                        yield sink.take()
                member.write(b"\n}\n")
            yield sink.take()
    yield sink.take()


STREAMS = {
    "jsonl": stream_jsonl,
    "json": stream_json,
    "csv": stream_csv,
    "parquet": stream_parquet,
    "wrench": stream_wrench,
}


def export_filename(*, project: Project, fmt: str, filters: ExportFilters) -> str:
    base = slugify(project.name) or f"project-{project.pk}"
    described = filters.describe()
    return f"{base}{'-' + described if described else ''}.{EXTENSIONS[fmt]}"


def stream_export(
    *, project: Project, fmt: str, filters: ExportFilters, csv_raw: bool = False
) -> Iterator[bytes]:
    """The export as an iterator of byte chunks (ValidationError for an unknown format).

    CSV cells that a spreadsheet would run as formulas are neutralized unless ``csv_raw``.
    """
    if fmt not in STREAMS:
        raise ValidationError({"format": f"unknown format '{fmt}'; use {', '.join(STREAMS)}"})
    if fmt == "csv":
        return stream_csv(project=project, filters=filters, csv_raw=csv_raw)
    return STREAMS[fmt](project=project, filters=filters)


def parse_csv_raw(params) -> bool:
    """The ``csv_raw`` query parameter: true/1/yes/on turns the formula protection off."""
    value = (params.get("csv_raw") or "").strip().lower()
    if value in {"", "0", "false", "no", "off"}:
        return False
    if value in {"1", "true", "yes", "on"}:
        return True
    raise ValidationError({"csv_raw": f"'{value}' is not true or false"})
