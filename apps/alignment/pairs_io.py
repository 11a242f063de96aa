"""Import and export of preference pairs.

Import (all or nothing, problems name file/line/row/column like ``apps.datasets``, whose readers
and problem classes it reuses): JSONL, CSV/TSV or Parquet rows with ``prompt``, ``chosen``,
``rejected`` and optional ``source``, ``id``, ``split``; or HH-RLHF dialogues (rows with only
``chosen``/``rejected`` transcripts, gzipped JSONL too) split into the shared prompt and the two
final responses (``models.dorm.data.split_dialogue``).

Export: JSONL, Parquet, or the TRL layout (``prompt``/``chosen``/``rejected``/``weight`` only,
what TRL's RewardTrainer and DPOTrainer read), streamed in chunks.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction

from apps.alignment.models import PairSplit, PairStatus, PreferencePair
from apps.datasets.pipeline.exceptions import ImportFailed, Problem, Problems, TooManyProblems
from apps.datasets.pipeline.readers import (
    ByteCounter,
    check_file,
    open_parquet,
    read_csv,
    read_jsonl,
    read_parquet,
    sniff_delimiter,
)
from models.dorm.data import DialogueError, split_dialogue

IMPORT_FORMATS = ("jsonl", "csv", "tsv", "parquet")
EXPORT_FORMATS = ("jsonl", "parquet", "trl")
TEXT_FIELDS = ("prompt", "chosen", "rejected")
OPTIONAL_FIELDS = ("source", "id", "split")
MAX_TEXT_CHARS = 200_000
BATCH = 2000


def detect_format(name: str) -> str | None:
    lower = name.lower().removesuffix(".gz")
    for suffix, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if lower.endswith(suffix):
            return fmt
    return None


def _records(path: Path, name: str, fmt: str, problems: Problems, counter: ByteCounter):
    if fmt == "jsonl":
        yield from read_jsonl(path, name, problems, counter)
    elif fmt in ("csv", "tsv"):
        delimiter = "\t" if fmt == "tsv" else sniff_delimiter(path)
        yield from read_csv(path, name, problems, counter, delimiter)
    elif fmt == "parquet":
        pf = open_parquet(path, name, problems)
        if pf is None:
            return
        have = set(pf.schema_arrow.names)
        cols = [c for c in (*TEXT_FIELDS, *OPTIONAL_FIELDS) if c in have]
        yield from read_parquet(pf, name, cols, counter, path.stat().st_size)
    else:
        problems.add(name, f"unknown format {fmt!r} (one of {', '.join(IMPORT_FORMATS)})")


def _text(value, record, column: str, problems: Problems, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.add(record.file, f"the {column} is missing or empty", **record.where(column))
        return None
    if not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool) and column == "id":
            return str(value)
        problems.add(
            record.file,
            f"the {column} must be text, got {type(value).__name__}",
            **record.where(column),
        )
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.add(
            record.file,
            f"the {column} has {len(value):,} characters (limit {MAX_TEXT_CHARS:,})",
            **record.where(column),
        )
        return None
    return value


def parse_pairs(
    path: Path, *, name: str, fmt: str, default_split: str = PairSplit.POOL
) -> tuple[list[dict], Problems]:
    """Checked pair dicts from one file, and the problems found (nothing is written)."""
    problems = Problems()
    rows: list[dict] = []
    tmp_dir = None
    try:
        if not check_file(path, name, problems, settings.FRUGAL_IMPORT_MAX_BYTES):
            return rows, problems
        if path.name.endswith(".gz"):
            tmp_dir = Path(tempfile.mkdtemp(prefix="frugal-pairs-"))
            plain = tmp_dir / path.name.removesuffix(".gz")
            try:
                with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as exc:
                problems.add(name, f"not a readable gzip file ({exc})")
                return rows, problems
            path = plain
        counter = ByteCounter(path.stat().st_size)
        seen: dict[str, str] = {}
        splits = {s.value for s in PairSplit}
        for record in _records(path, name, fmt, problems, counter):
            f = record.fields
            dialogue = "prompt" not in f and "chosen" in f and "rejected" in f
            chosen = _text(f.get("chosen"), record, "chosen", problems, required=True)
            rejected = _text(f.get("rejected"), record, "rejected", problems, required=True)
            if dialogue:
                if chosen is None or rejected is None:
                    continue
                try:
                    prompt, chosen, rejected = split_dialogue(chosen, rejected)
                except DialogueError as exc:
                    problems.add(
                        name, f"cannot split the dialogues: {exc}", **record.where("chosen")
                    )
                    continue
                # an empty final response is a real answer (the assistant said nothing): kept
            else:
                prompt = _text(f.get("prompt"), record, "prompt", problems, required=True)
            source = _text(f.get("source"), record, "source", problems, required=False) or ""
            ext = _text(f.get("id"), record, "id", problems, required=False)
            split = (_text(f.get("split"), record, "split", problems, required=False) or "").strip()
            if prompt is None or chosen is None or rejected is None:
                continue
            if chosen == rejected:
                problems.add(
                    name, "chosen and rejected are the same text", **record.where("rejected")
                )
                continue
            split = split.lower() or str(default_split)
            if split not in splits:
                problems.add(
                    name,
                    f"unknown split {split!r} (one of {', '.join(sorted(splits))})",
                    **record.where("split"),
                )
                continue
            ext = (ext or f"{Path(name).name}:{record.row or record.line}").strip()[:200]
            if ext in seen:
                problems.add(
                    name, f"the id {ext!r} appears twice ({seen[ext]})", **record.where("id")
                )
                continue
            seen[ext] = (
                f"first at line {record.line}" if record.line else f"first at row {record.row}"
            )
            rows.append(
                {
                    "external_id": ext,
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "source": source[:200],
                    "split": split,
                }
            )
        if not rows and not problems:
            problems.add(name, "the file holds no pairs")
    except TooManyProblems:
        pass
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return rows, problems


def import_pairs(
    *,
    project,
    path: Path,
    name: str | None = None,
    fmt: str | None = None,
    default_split: str = "pool",
) -> int:
    """Import every pair of the file or none (raises ``ImportFailed`` listing the problems)."""
    name = name or path.name
    fmt = fmt or detect_format(name)
    if fmt not in IMPORT_FORMATS:
        raise ImportFailed(
            [_problem(name, f"cannot tell the format; use one of {', '.join(IMPORT_FORMATS)}")]
        )
    if default_split not in {s.value for s in PairSplit}:
        raise ImportFailed([_problem(name, f"unknown split {default_split!r}")])
    rows, problems = parse_pairs(path, name=name, fmt=fmt, default_split=default_split)
    if problems:
        raise problems.failure()
    ids = [r["external_id"] for r in rows]
    taken = set()
    for s in range(0, len(ids), BATCH):
        taken |= set(
            PreferencePair.objects.filter(
                project=project, external_id__in=ids[s : s + BATCH]
            ).values_list("external_id", flat=True)
        )
    if taken:
        for ext in sorted(taken)[:20]:
            problems.items.append(
                _problem(name, f"a pair with id {ext!r} is already in the project", column="id")
            )
        raise ImportFailed(problems.items, truncated=len(taken) > 20)
    try:
        with transaction.atomic():
            PreferencePair.objects.bulk_create(
                [PreferencePair(project=project, **r) for r in rows], batch_size=BATCH
            )
    except IntegrityError as exc:  # a concurrent import took an id
        raise ImportFailed(
            [_problem(name, f"the import collided with another one: {exc}")]
        ) from exc
    return len(rows)


def _problem(file: str, reason: str, **where) -> Problem:
    return Problem(file=file, reason=reason, **where)


# --------------------------------------------------------------------------- export
def export_rows(queryset, *, layout: str) -> Iterator[dict]:
    """Dicts of the pairs (TRL layout: prompt/chosen/rejected/weight only)."""
    fields = ["external_id", "prompt", "chosen", "rejected", "source", "split", "status"]
    fields += ["stage1_weight", "weight", "margin"]
    for p in queryset.only(*fields).order_by("id").iterator(chunk_size=BATCH):
        weight = p.weight if p.weight is not None else 1.0
        if p.status == PairStatus.DISCARDED:
            weight = 0.0
        if layout == "trl":
            yield {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "weight": weight}
        else:
            yield {
                "id": p.external_id,
                "prompt": p.prompt,
                "chosen": p.chosen,
                "rejected": p.rejected,
                "source": p.source,
                "split": p.split,
                "status": p.status,
                "stage1_weight": p.stage1_weight,
                "weight": weight,
                "margin": p.margin,
            }


def export_jsonl(rows: Iterable[dict]) -> Iterator[bytes]:
    buf = []
    for i, row in enumerate(rows, 1):
        buf.append(orjson.dumps(row) + b"\n")
        if i % 500 == 0:
            yield b"".join(buf)
            buf = []
    if buf:
        yield b"".join(buf)


def export_parquet(rows: Iterable[dict], *, layout: str) -> bytes:
    """The rows as one Parquet file (written in row groups of ``BATCH``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if layout == "trl":
        schema = pa.schema(
            [
                ("prompt", pa.string()),
                ("chosen", pa.string()),
                ("rejected", pa.string()),
                ("weight", pa.float64()),
            ]
        )
    else:
        schema = pa.schema(
            [
                ("id", pa.string()),
                ("prompt", pa.string()),
                ("chosen", pa.string()),
                ("rejected", pa.string()),
                ("source", pa.string()),
                ("split", pa.string()),
                ("status", pa.string()),
                ("stage1_weight", pa.float64()),
                ("weight", pa.float64()),
                ("margin", pa.float64()),
            ]
        )
    out = io.BytesIO()
    with pq.ParquetWriter(out, schema) as writer:
        chunk: list[dict] = []
        wrote = False
        for row in rows:
            chunk.append(row)
            if len(chunk) >= BATCH:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk, wrote = [], True
        if chunk or not wrote:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return out.getvalue()
