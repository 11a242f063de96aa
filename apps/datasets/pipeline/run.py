"""The import pipeline end to end: readers → column mapping → row checks → writer, all or
nothing (one transaction on PostgreSQL; on SQLite a staging table and one short transaction at
the end). Any problem leaves the project as it was; the caller gets :class:`ImportFailed`.
"""

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from psycopg.errors import IntegrityError as PsycopgIntegrityError

from apps.datasets import search_index
from apps.datasets.export import restore_formula
from apps.datasets.models import Split
from apps.datasets.pipeline.exceptions import ImportFailed, Problem, Problems, TooManyProblems
from apps.datasets.pipeline.parsers import FIELDS, LabelMap, RowMaker
from apps.datasets.pipeline.readers import (
    ByteCounter,
    Record,
    check_file,
    open_parquet,
    read_csv,
    read_json_array,
    read_json_object,
    read_jsonl,
    read_parquet,
    sniff_delimiter,
)
from apps.projects.models import Project

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "wrench")
WRENCH_FILES = (("train", Split.POOL.value), ("valid", Split.DEV.value), ("test", Split.TEST.value))
PROGRESS_EVERY_S = 0.5
CSV_ROLES = ("text", "label", "id", "split", "entity1", "entity2", "span1", "span2")

ProgressFn = Callable[[float, str], None]


@dataclass
class ImportOptions:
    """How to read a source. ``columns`` maps Frugal's field names to the file's column names."""

    format: str
    columns: dict[str, str] = field(default_factory=dict)
    delimiter: str | None = None
    default_split: str = Split.POOL.value
    keep_train_labels: bool = False
    display_name: str | None = None  # the file's name as the user knows it (uploads)
    clean_text: bool = False  # unescape HTML entities, <br> → newline, drop byte order marks

    @classmethod
    def from_params(cls, params: dict) -> "ImportOptions":
        return cls(
            format=params["format"],
            columns={k: v for k, v in (params.get("columns") or {}).items() if v},
            delimiter=params.get("delimiter") or None,
            default_split=params.get("default_split") or Split.POOL.value,
            keep_train_labels=bool(params.get("keep_train_labels")),
            display_name=params.get("display_name") or None,
            clean_text=bool(params.get("clean_text")),
        )


def detect_format(path: Path) -> str | None:
    """The format a path's name suggests (a folder is WRENCH), or ``None``."""
    if path.is_dir():
        return "wrench"
    return {
        ".csv": "csv",
        ".tsv": "tsv",
        ".tab": "tsv",
        ".txt": "tsv",
        ".jsonl": "jsonl",
        ".json": "json",
        ".ndjson": "jsonl",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".zip": "wrench",
    }.get(path.suffix.lower())


# --- sources: each yields (record, canonical fields, fallback id) ----------------------------


def _csv_source(path, name, options, problems, counter) -> Iterator[tuple[Record, dict, str]]:
    delimiter = options.delimiter or ("\t" if options.format == "tsv" else sniff_delimiter(path))
    records = read_csv(path, name, problems, counter, delimiter)
    mapping = dict(options.columns)
    export_mapper = _ObjectMapper({})
    first = True
    for record in records:
        if first:
            first = False
            header = set(record.fields)
            mapping.setdefault("text", "text")
            for key in CSV_ROLES:  # columns named like a role play it unless mapped otherwise
                if key not in mapping and key in header and key not in mapping.values():
                    mapping[key] = key
            names = {("gold_label" if k == "label" else k): c for k, c in mapping.items()}
            export_shape = not options.columns and ("gold_label" in header)
            missing = [(k, c) for k, c in mapping.items() if c not in header]
            for key, column in missing:
                reason = (
                    "the text column is missing from the header"
                    if key == "text"
                    else f"the {key.replace('_', ' ')} column is not in the header"
                )
                problems.add(name, reason, line=1, column=column)
            if missing:
                return
        values = record.fields
        if export_shape:  # Frugal's own CSV export: every field by its name
            for key in _NEUTRALIZED_COLUMNS:  # cells the export guarded against formulas
                value = values.get(key)
                if value and value[0] == "'":
                    values[key] = restore_formula(value)
            fields, names = export_mapper(values)
            yield record, fields, f"{name}:{record.row}", names
            continue
        fields = {k: values[c] for k, c in mapping.items()}
        if "label" in fields:  # the label column of a CSV holds gold labels
            fields["gold_label"] = fields.pop("label")
        yield record, fields, f"{name}:{record.row}", names


_LABEL_KEYS = ("gold_label", "gold_label_name")
_NEUTRALIZED_COLUMNS = ("id", "text", "gold_label_name", "label_name", "version")


class _ObjectMapper:
    """Canonical fields of a JSONL/JSON/Parquet record (Frugal's own export shape maps as-is),
    and the record's own name for each field (for problems; one shared dict per variant)."""

    def __init__(self, columns: dict):
        self.columns = columns
        self.sources = [(key, columns.get(key, key)) for key in FIELDS]
        self.base = dict(self.sources)
        self.variants: dict[tuple, dict] = {}

    def names(self, gold: str, label: str) -> dict:
        names = self.variants.get((gold, label))
        if names is None:
            names = self.variants[gold, label] = {**self.base, "gold_label": gold, "label": label}
        return names

    def __call__(self, values: dict) -> tuple[dict, dict]:
        """``values`` is the reader's own dict: without a column mapping it becomes the
        fields (its keys are already Frugal's names; the row maker only reads known keys)."""
        columns = self.columns
        get = values.get
        fields = {key: get(source) for key, source in self.sources} if columns else values
        gold_name, label_name = self.base["gold_label"], self.base["label"]
        if "gold_label" not in columns and not any(k in values for k in _LABEL_KEYS):
            # A plain ``label`` is the gold label of a labeled data set.
            gold_name = "label_name" if get("label_name") is not None else label_name
            fields["gold_label"] = get(gold_name)
            fields["label"] = None
        else:
            if get("gold_label_name") is not None and "gold_label" not in columns:
                gold_name = "gold_label_name"
                fields["gold_label"] = values[gold_name]
            if get("label_name") is not None and "label" not in columns:
                label_name = "label_name"
                fields["label"] = values[label_name]
        return fields, self.names(gold_name, label_name)


def _jsonl_source(path, name, options, problems, counter):
    # The column step's "label" role is the gold label, as for CSV.
    columns = {("gold_label" if k == "label" else k): v for k, v in options.columns.items()}
    if options.format == "json":
        records = read_json_array(path, name, problems, counter)
    else:
        records = read_jsonl(path, name, problems, counter, id_key=columns.get("id", "id"))
    mapper = _ObjectMapper(columns)
    for record in records:
        fields, names = mapper(record.fields)
        yield record, fields, f"{name}:{record.line}", names


_PARQUET_KINDS = {
    "id": ("string", "integer"),
    "text": ("string",),
    "split": ("string",),
    "gold_label": ("string", "integer"),
    "gold_label_name": ("string",),
    "label": ("string", "integer"),
    "label_name": ("string",),
    "confidence": ("floating", "integer"),
    "source": ("string",),
    "version": ("string",),
    "entities": ("string", "list"),
    "entity1": ("string",),
    "entity2": ("string",),
    "span1": ("string", "list"),
    "span2": ("string", "list"),
    "votes": ("string", "struct", "map"),
    "weak_labels": ("string", "list"),
}


def _arrow_kind(arrow_type) -> str:
    import pyarrow.types as t

    if t.is_null(arrow_type):
        return "null"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_string_view(arrow_type):
        return "string"
    if t.is_integer(arrow_type):
        return "integer"
    if t.is_floating(arrow_type):
        return "floating"
    if t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_fixed_size_list(arrow_type):
        return "list"
    if t.is_struct(arrow_type):
        return "struct"
    if t.is_map(arrow_type):
        return "map"
    return str(arrow_type)


def _parquet_source(path, name, options, problems, counter):
    parquet = open_parquet(path, name, problems)
    if parquet is None:
        return
    schema = parquet.schema_arrow
    present = set(schema.names)
    columns = options.columns
    wanted: dict[str, str] = {}
    for key, kinds in _PARQUET_KINDS.items():
        column = columns.get(key, key)
        if column not in present:
            continue
        kind = _arrow_kind(schema.field(column).type)
        if kind not in (*kinds, "null"):
            problems.add(
                name,
                f"the column has type {schema.field(column).type}; expected " + " or ".join(kinds),
                column=column,
            )
        wanted[key] = column
    text_column = columns.get("text", "text")
    if "text" not in wanted:
        problems.add(name, "the text column is missing", column=text_column)
    if problems:
        return
    renamed = {column: key for key, column in wanted.items()}
    size = path.stat().st_size
    mapper = _ObjectMapper({})
    for record in read_parquet(parquet, name, sorted(renamed), counter, size, problems):
        values = {renamed[c]: v for c, v in record.fields.items()}
        fields, names = mapper(values)
        yield (
            record,
            fields,
            f"{name}:{record.row}",
            {k: wanted.get(v, v) for k, v in names.items()},
        )


def _wrench_source(folder, options, problems, counter, prefix: str):
    keep_train = options.keep_train_labels
    for stem, split in WRENCH_FILES:
        path = folder / f"{stem}.json"
        if not path.exists():
            continue
        name = f"{prefix}{stem}.json"
        for line, key, value in read_json_object(path, name, problems, counter):
            record = Record(name, {}, line=line)
            data = value.get("data") if isinstance(value, dict) else None
            if not isinstance(data, dict):
                problems.add(
                    name,
                    f"record '{key}' must be an object with a 'data' object "
                    '({"data": {"text": ...}, "label": ..., "weak_labels": [...]})',
                    line=line,
                    column="data",
                )
                continue
            gold = value.get("label") if (split != Split.POOL or keep_train) else None
            fields = {
                "id": f"{stem}:{key}",
                "text": data.get("text"),
                "split": split,
                "gold_label": gold,
                "entity1": data.get("entity1"),
                "entity2": data.get("entity2"),
                "span1": data.get("span1"),
                "span2": data.get("span2"),
                "weak_labels": value.get("weak_labels"),
            }
            yield record, fields, f"{stem}:{key}", _WRENCH_NAMES


_WRENCH_NAMES = {"text": "data.text", "gold_label": "label", "id": "key"}


def _wrench_labels(folder: Path, prefix: str, project: Project, problems: Problems):
    """The label list a WRENCH folder declares (``None`` when it has no label.json)."""
    path = folder / "label.json"
    name = f"{prefix}label.json"
    if not path.exists():
        if not project.labels:
            problems.add(name, "label.json is missing, and the project has no labels yet")
        return None
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
        names = [str(raw[str(i)]) for i in range(len(raw))]
        if any("\x00" in label for label in names):
            problems.add(name, "a label name contains a NUL character")
            return None
    except UnicodeDecodeError:
        problems.add(name, "not valid UTF-8; save the file with UTF-8 encoding")
        return None
    except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        problems.add(name, f'expected {{"0": name, "1": name, ...}} ({reason})')
        return None
    if project.labels and [n.casefold() for n in names] == [
        str(label).casefold() for label in project.labels
    ]:
        return list(project.labels)  # ``ham`` and ``HAM`` are the same label: keep the project's
    if project.labels and names != list(project.labels):
        problems.add(
            name,
            f"the labels {names} differ from the project's labels {list(project.labels)}; "
            "WRENCH labels are indexes, so they must be the same, in the same order",
        )
    return names


# --- the pipeline ----------------------------------------------------------------------------


def import_examples(
    *,
    project: Project,
    path: Path,
    options: ImportOptions,
    progress: ProgressFn | None = None,
    max_bytes: int | None = None,
    before_commit: Callable[[], None] | None = None,
) -> dict:
    """Import the file or WRENCH folder at ``path`` into ``project``, all or nothing.

    Returns a summary (rows per split, labels); raises :class:`ImportFailed` listing the
    problems (file, line/row, column, reason) when anything is wrong, having changed nothing.
    ``before_commit`` runs inside the transaction that commits the rows, as its last step (a
    job passes ``JobContext.commit_point``: a job re-queued meanwhile rolls the import back).
    """
    if options.format not in FORMATS:
        raise ImportFailed([_problem(path.name, f"unknown format '{options.format}'")])
    max_bytes = settings.FRUGAL_IMPORT_MAX_BYTES if max_bytes is None else max_bytes
    started = time.monotonic()
    problems = Problems()
    name = options.display_name or path.name
    prefix = f"{name}/" if options.format == "wrench" else ""

    if options.format == "wrench":
        if not path.is_dir():
            raise ImportFailed([_problem(name, "a WRENCH import needs a folder")])
        files = [path / f"{stem}.json" for stem, _ in WRENCH_FILES]
        files = [file for file in files if file.exists()]
        if not files:
            raise ImportFailed(
                [_problem(name, "the folder has none of train.json, valid.json, test.json")]
            )
    else:
        if not path.is_file():
            raise ImportFailed([_problem(name, "the file does not exist")])
        files = [path]

    try:
        for file in files:
            check_file(file, f"{prefix}{file.name}" if prefix else name, problems, max_bytes)
        total = sum(f.stat().st_size for f in files)
        if total > max_bytes and not problems:
            problems.add(
                name, f"the files total {total:,} bytes, over the limit of {max_bytes:,} bytes"
            )
    except TooManyProblems:
        pass
    if problems:
        raise problems.failure()

    # One transaction around everything, except on SQLite, where rows are staged in a TEMP
    # table and committed in one short write transaction at the end (see writers.py): a long
    # SQLite write transaction would block every other writer for the whole import.
    staged = connection.vendor == "sqlite"
    with nullcontext() if staged else transaction.atomic():
        projects = Project.objects if staged else Project.objects.select_for_update()
        locked = projects.get(pk=project.pk)
        try:
            summary = _run(
                locked, path, files, name, prefix, options, problems, total, progress, before_commit
            )
        except TooManyProblems:
            summary = None
        except (IntegrityError, PsycopgIntegrityError) as exc:
            problems.items.append(
                _problem(name, f"the database refused the rows ({exc}); a concurrent import?")
            )
            summary = None
        if problems:
            raise problems.failure()
        # Full-text indexing is not part of the import: the job that fills the new rows'
        # search vectors is enqueued when this transaction commits (see search_index).
        index_job = search_index.schedule_indexing(project=locked)
    project.labels = locked.labels
    summary["seconds"] = round(time.monotonic() - started, 3)
    summary["search_index_job"] = index_job.pk if index_job is not None else None
    return summary


def _problem(file: str, reason: str) -> Problem:
    return Problem(file=file, reason=reason)


def _run(
    project, path, files, name, prefix, options, problems, total, progress, before_commit
) -> dict | None:
    labels_before = list(project.labels)
    counter = ByteCounter(total)
    if options.format == "wrench":
        declared = _wrench_labels(path, prefix, project, problems)
        labels = LabelMap(declared if declared is not None else project.labels, grow=False)
    else:
        labels = LabelMap(project.labels, grow=not project.labels)

    def make_source(problems, counter):
        if options.format == "wrench":
            return _wrench_source(path, options, problems, counter, prefix)
        reader = {
            "csv": _csv_source,
            "tsv": _csv_source,
            "jsonl": _jsonl_source,
            "json": _jsonl_source,
            "parquet": _parquet_source,
        }[options.format]
        return reader(path, name, options, problems, counter)

    source = make_source(problems, counter)
    maker = RowMaker(
        labels=labels,
        task_type=project.task_type,
        default_split=options.default_split,
        problems=problems,
        labels_fixed_for_votes=not labels.grow,
        max_text_chars=settings.FRUGAL_MAX_TEXT_CHARS,
        clean_text=options.clean_text,
    )
    from apps.datasets.pipeline.writers import ExampleWriter

    writer = ExampleWriter(
        project=project,
        problems=problems,
        check_existing=project.examples.exists(),
        use_copy=connection.vendor == "postgresql",
        project_locked=True,  # import_examples holds it FOR UPDATE on PostgreSQL
    )
    try:
        return _write_all(
            project,
            source,
            maker,
            writer,
            labels,
            labels_before,
            options,
            name,
            files,
            prefix,
            problems,
            counter,
            progress,
            before_commit,
        )
    except (IntegrityError, PsycopgIntegrityError) as exc:
        # The streaming COPY relies on the unique index for duplicate ids within the file
        # (no id set in memory); find where the duplicate is for the message.
        writer.close(error=exc)
        duplicate = _duplicate_id(exc)
        if duplicate is None:
            raise
        problem = _locate_duplicate(duplicate, make_source(Problems(), ByteCounter(1)))
        if problem is None:
            raise
        problems.items.append(problem)
        return None
    except BaseException as exc:
        writer.close(error=exc)
        raise


_UNIQUE_DETAIL = re.compile(r"\(project_id, external_id\)=\((\d+), (.*)\) already exists")


def _duplicate_id(exc: Exception) -> str | None:
    """The external id a unique violation names (psycopg's detail), or ``None``."""
    diag = getattr(exc, "diag", None) or getattr(exc.__cause__, "diag", None)
    detail = getattr(diag, "message_detail", None) or str(exc)
    match = _UNIQUE_DETAIL.search(detail)
    return match.group(2) if match else None


def _locate_duplicate(external_id: str, source):
    """The problem at the second record of the source with this id (a second read)."""
    first = None
    for record, fields, fallback_id, _ in source:
        raw = fields.get("id")
        value = fallback_id if raw is None or str(raw).strip() == "" else str(raw).strip()
        if value != external_id:
            continue
        if first is None:
            first = record
            continue
        earlier = ", ".join(f"{k} {v}" for k, v in first.where().items())
        return Problem(
            file=record.file,
            reason=f"duplicate id '{external_id}': an earlier row of this import has it "
            f"({first.file}{', ' + earlier if earlier else ''})",
            **record.where("id"),
        )
    return None


def _write_all(
    project,
    source,
    maker,
    writer,
    labels,
    labels_before,
    options,
    name,
    files,
    prefix,
    problems,
    counter,
    progress,
    before_commit,
):
    # Duplicate ids within the file: the unique index finds them in a streaming COPY (see
    # _run); otherwise a set of the ids seen so far does.
    seen: set[str] | None = None if writer.streams else set()
    splits: Counter = Counter()
    read = 0
    next_report = time.monotonic() + PROGRESS_EVERY_S
    for record, fields, fallback_id, names in source:
        read += 1
        row = maker.make(record, fields, fallback_id, names)
        if row is not None:
            if seen is not None:
                external_id = row[0]
                if external_id in seen:
                    problems.add(
                        record.file,
                        f"duplicate id '{external_id}': an earlier row of this import has it",
                        **record.where("id"),
                    )
                    continue
                seen.add(external_id)
            splits[row[1]] += 1
            writer.add(row, record)
        if progress is not None and not read % 1000 and time.monotonic() >= next_report:
            next_report = time.monotonic() + PROGRESS_EVERY_S
            progress(0.99 * counter.fraction, f"{read:,} rows read, {writer.written:,} written")
    writer.flush()
    if not problems and writer.written == 0:
        problems.add(name, "no examples found: the file has no records")
    if problems:
        writer.close()
        return None
    with writer.committing():
        if labels.labels != labels_before:
            project.labels = labels.labels
            project.save(update_fields=["labels"])
        if before_commit is not None:
            before_commit()
    if progress is not None:
        progress(1.0, f"{writer.written:,} examples imported")
    return {
        "rows": writer.written,
        "splits": {split: splits.get(split, 0) for split in (s.value for s in Split)},
        "labels": list(project.labels),
        "labels_added": labels.labels[len(labels_before) :],
        "format": options.format,
        "files": [f"{prefix}{f.name}" if prefix else name for f in files],
    }
