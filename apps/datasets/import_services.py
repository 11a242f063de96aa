"""Dataset import services: where a file comes from (upload or server path), and launching the
import job. The reading and writing is the pipeline's (:mod:`apps.datasets.pipeline`).

Sources:
- an upload is saved under ``settings.FRUGAL_UPLOAD_DIR`` with a random name and deleted when
  its job ends (a ``.zip`` holding a WRENCH folder is unpacked there);
- a server-side path must resolve (symlinks followed) below one of
  ``settings.FRUGAL_IMPORT_ROOTS``; anything else is refused without saying whether it exists.
"""

import csv
import secrets
import shutil
import time
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from apps.datasets.models import Split
from apps.datasets.pipeline import FORMATS, ImportOptions, detect_format
from apps.datasets.pipeline.readers import sniff_delimiter
from apps.datasets.pipeline.run import WRENCH_FILES
from apps.projects.models import Project

IMPORT_JOB_KIND = "import_dataset"
UPLOAD_SUFFIXES = {
    *(".csv", ".tsv", ".tab", ".txt", ".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".zip")
}
STALE_UPLOAD_S = 24 * 3600
COLUMN_KEYS = ("text", "label", "id", "split", "entity1", "entity2", "span1", "span2")
WRENCH_NAMES = {f"{stem}.json" for stem, _ in WRENCH_FILES} | {"label.json"}


def upload_dir() -> Path:
    path = Path(settings.FRUGAL_UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_staged_upload(path: Path) -> bool:
    """True for a path this module staged under the upload folder (safe to delete)."""
    try:
        return path.resolve().parent == upload_dir().resolve()
    except OSError:
        return False


def remove_staged(path: Path) -> None:
    """Delete a staged upload (file or unpacked folder); other paths are never touched."""
    if not is_staged_upload(path):
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale_uploads() -> None:
    """Uploads staged for a CSV column step that was never finished are removed after a day."""
    cutoff = time.time() - STALE_UPLOAD_S
    for entry in upload_dir().iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                remove_staged(entry)
        except OSError:
            continue


def stage_upload(*, uploaded, fmt: str | None = None) -> tuple[Path, str]:
    """Save an uploaded file under the upload folder with a random name.

    Returns ``(path, original name)``. Refuses files over ``FRUGAL_IMPORT_MAX_BYTES`` and
    unknown extensions; a ``.zip`` (WRENCH folder) is unpacked into a folder.
    """
    original = Path(uploaded.name or "upload").name
    suffix = Path(original).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ValidationError(
            f"{original}: unsupported file type '{suffix or '(none)'}'; use .csv, .tsv, "
            ".jsonl, .json (an array of records), .parquet, or a .zip of a WRENCH folder"
        )
    limit = settings.FRUGAL_IMPORT_MAX_BYTES
    if uploaded.size is not None and uploaded.size > limit:
        raise ValidationError(
            f"{original}: the file is {uploaded.size:,} bytes, over the import limit of "
            f"{limit:,} bytes (FRUGAL_IMPORT_MAX_BYTES)"
        )
    _remove_stale_uploads()
    staged = upload_dir() / f"{secrets.token_hex(16)}{suffix}"
    written = 0
    with open(staged, "wb") as out:
        for chunk in uploaded.chunks():
            written += len(chunk)
            if written > limit:
                out.close()
                staged.unlink(missing_ok=True)
                raise ValidationError(
                    f"{original}: the file is over the import limit of {limit:,} bytes "
                    "(FRUGAL_IMPORT_MAX_BYTES)"
                )
            out.write(chunk)
    if suffix == ".zip" or fmt == "wrench":
        try:
            return _unpack_wrench_zip(staged, original), original
        finally:
            staged.unlink(missing_ok=True)
    return staged, original


def _unpack_wrench_zip(archive: Path, original: str) -> Path:
    """Unpack the WRENCH files of a zip (at any depth, by base name only: no path traversal)."""
    folder = upload_dir() / secrets.token_hex(16)
    limit = settings.FRUGAL_IMPORT_MAX_BYTES
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if Path(m.filename).name in WRENCH_NAMES]
            if sum(m.file_size for m in members) > limit:
                raise ValidationError(f"{original}: the unpacked files are over the import limit")
            names = [Path(m.filename).name for m in members]
            if len(set(names)) != len(names):
                raise ValidationError(f"{original}: the zip holds more than one {names[0]}")
            if not any(n != "label.json" for n in names):
                raise ValidationError(
                    f"{original}: the zip holds none of train.json, valid.json, test.json"
                )
            folder.mkdir()
            for member in members:
                target = folder / Path(member.filename).name
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile:
        shutil.rmtree(folder, ignore_errors=True)
        raise ValidationError(f"{original}: not a valid zip file") from None
    except ValidationError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def import_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.FRUGAL_IMPORT_ROOTS]


def resolve_server_path(raw: str) -> Path:
    """The real path of a server-side import source, if it lies below an allowed root.

    A relative path is taken relative to each root in turn, then to the project's folder
    (``settings.BASE_DIR``). ``..`` and symlinks are resolved
    before the check, so neither can escape; paths outside the roots are refused with the same
    message whether or not they exist.
    """
    raw = (raw or "").strip()
    if not raw:
        raise ValidationError("Give a path on the server.")
    if "\x00" in raw:
        raise ValidationError("The path is not valid.")
    roots = import_roots()
    # Messages never name the server's folders (job errors are shown to every member); the
    # import page lists the allowed folders to its admins.
    allowed = "the allowed import folders (FRUGAL_IMPORT_ROOTS)"
    shown = raw if not Path(raw).is_absolute() else Path(raw).name
    refused = ValidationError(f"{shown}: imports may only read below {allowed}.")
    given = Path(raw)
    # A relative path is tried below each root, then against the project's folder (the README's
    # ``../shared/data/wrench-sms``); either way it must end up below a root.
    candidates = (
        [given]
        if given.is_absolute()
        else [root / given for root in roots] + [Path(settings.BASE_DIR) / given]
    )
    inside = False
    for candidate in candidates:
        lexical = Path(_normpath(candidate))
        if not any(lexical.is_relative_to(root) for root in roots):
            continue
        inside = True
        try:
            real = candidate.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, RuntimeError):
            raise refused from None
        if not any(real.is_relative_to(root) for root in roots):
            raise refused
        if real.is_dir():
            for name in WRENCH_NAMES:
                member = real / name
                if member.exists() and not any(
                    member.resolve().is_relative_to(root) for root in roots
                ):
                    raise refused
        return real
    if not inside:
        raise refused
    raise ValidationError(f"{shown}: no such file or folder below {allowed}.")


def relative_to_roots(path: Path) -> str:
    """``path`` as the import roots see it (``wrench-youtube/train.json``): what job parameters
    store and members see. The worker resolves it again, below the roots, when the job runs
    (so a path that has since moved outside them is refused then too). A path that a relative
    name would not find again (the same name below an earlier root) stays as it is."""
    for root in import_roots():
        if path.is_relative_to(root):
            relative = str(path.relative_to(root)) or "."
            try:
                if resolve_server_path(relative) == path:
                    return relative
            except ValidationError:
                pass
            break
    return str(path)


def _normpath(path: Path) -> str:
    import os.path

    return os.path.normpath(str(path))


def clean_import_params(params: dict) -> dict:
    """Validate job parameters for ``import_dataset`` (server paths only: uploads come from
    the import page). Used when the kind is launched by name through the jobs API."""
    unknown = set(params) - {
        "path",
        "format",
        "columns",
        "delimiter",
        "default_split",
        "keep_train_labels",
        "clean_text",
    }
    if unknown:
        raise ValidationError(f"Unknown parameter(s) for import: {', '.join(sorted(unknown))}.")
    path = resolve_server_path(str(params.get("path") or ""))
    return build_params(
        source="path",
        path=path,
        fmt=params.get("format") or "",
        columns=params.get("columns") or {},
        delimiter=params.get("delimiter") or "",
        default_split=params.get("default_split") or Split.POOL.value,
        keep_train_labels=bool(params.get("keep_train_labels")),
        clean_text=bool(params.get("clean_text")),
        display_name=path.name,
    )


def build_params(
    *,
    source: str,
    path: Path,
    fmt: str,
    columns: dict | None = None,
    delimiter: str = "",
    default_split: str = Split.POOL.value,
    keep_train_labels: bool = False,
    display_name: str = "",
    clean_text: bool = False,
) -> dict:
    """Checked, JSON-ready parameters of an import job."""
    fmt = fmt or detect_format(path) or ""
    if fmt not in FORMATS:
        raise ValidationError(
            f"Cannot tell the format of {display_name or path.name}; choose one of "
            + ", ".join(FORMATS)
        )
    if fmt == "wrench" and not path.is_dir():
        raise ValidationError("A WRENCH import needs a folder (or a .zip of one).")
    if fmt != "wrench" and path.is_dir():
        raise ValidationError(f"{display_name or path.name} is a folder; choose the WRENCH format.")
    if default_split not in {s.value for s in Split}:
        raise ValidationError(f"Unknown split '{default_split}'.")
    columns = {k: str(v) for k, v in (columns or {}).items() if v}
    bad = set(columns) - set(COLUMN_KEYS)
    if bad:
        raise ValidationError(f"Unknown column role(s): {', '.join(sorted(bad))}.")
    if delimiter not in {"", ",", "\t", ";", "|"}:
        raise ValidationError("The delimiter must be one of , ; | or a tab.")
    return {
        "source": source,
        # An upload is named by its staged file's name only (no server path reaches the job's
        # parameters, which annotators may see); the worker resolves it in the upload folder.
        "path": relative_to_roots(path) if source == "path" else path.name,
        "display_name": display_name or path.name,
        "format": fmt,
        "columns": columns,
        "delimiter": delimiter,
        "default_split": default_split,
        "keep_train_labels": keep_train_labels,
        "clean_text": bool(clean_text),
    }


def source_path(params: dict) -> Path:
    """The file or folder an import's parameters name: the staged upload, or the server path
    resolved below the import roots again (ValidationError when it no longer is)."""
    if params.get("source") == "upload":
        return staged_path(params["path"])
    return resolve_server_path(params["path"])


def staged_path(name: str) -> Path:
    """The staged upload called ``name`` in the upload folder. Only the last part of ``name``
    counts (parameters of older jobs held absolute paths), so no name reaches outside it."""
    base = Path(str(name or "")).name
    if base in ("", ".", ".."):
        raise ValidationError("The uploaded file is gone; upload it again.")
    return upload_dir() / base


def start_import(*, project: Project, user, params: dict):
    """Launch the import job (the caller checked that ``user`` administers ``project``)."""
    from apps.jobs.services import launch_job

    return launch_job(kind=IMPORT_JOB_KIND, project=project, user=user, params=params)


def import_options(params: dict) -> ImportOptions:
    return ImportOptions.from_params(params)


def csv_preview(
    *, path: Path, fmt: str, delimiter: str | None = None, rows: int = 5, name: str = ""
) -> dict:
    """The header, the first rows and the delimiter of a CSV/TSV file, for the column step.

    Raises ValidationError with the file (``name``: the user's name for it, not the staged
    one), line and reason when the start is unreadable.
    """
    from apps.datasets.pipeline.exceptions import Problems, TooManyProblems
    from apps.datasets.pipeline.readers import check_file, csv_reason, read_csv_header

    problems = Problems()
    name = name or path.name
    reader = None
    delimiter = delimiter or ("\t" if fmt == "tsv" else sniff_delimiter(path))
    try:
        opened = None
        if check_file(path, name, problems, settings.FRUGAL_IMPORT_MAX_BYTES):
            opened = read_csv_header(path, name, problems, delimiter)
        preview = []
        if opened is not None:
            header, reader, _ = opened
            for values in reader:
                preview.append(values)
                if len(preview) >= rows:
                    break
    except TooManyProblems:
        raise ValidationError(str(problems.items[0])) from None
    except csv.Error as exc:
        line = getattr(reader, "line_num", None)
        where = f", line {line}" if line else ""
        raise ValidationError(f"{name}{where}: {csv_reason(exc)}") from None
    if problems:
        raise ValidationError([str(p) for p in problems.items])
    return {"header": header, "rows": preview, "delimiter": delimiter}


def jsonl_preview(*, path: Path, rows: int = 5, name: str = "") -> dict:
    """The keys (in first-seen order) and first records of a JSONL file, for the column step
    (same shape as :func:`csv_preview`: ``header``, ``rows`` of strings, ``delimiter`` "")."""
    import orjson

    name = name or path.name
    records: list[dict] = []
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise ValidationError(
                        f"{name}, line {number}: not valid JSON (one object per line)."
                    ) from None
                if not isinstance(value, dict):
                    raise ValidationError(f"{name}, line {number}: expected a JSON object.")
                records.append(value)
                if len(records) >= rows or number > 1000:
                    break
    except OSError as exc:
        raise ValidationError(f"{name}: cannot be read ({exc.strerror}).") from None
    if not records:
        raise ValidationError(f"{name}: no records.")
    header: list[str] = []
    for record in records:
        header += [str(key) for key in record if str(key) not in header]

    def shown(value) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else orjson.dumps(value).decode()

    return {
        "header": header,
        "rows": [[shown(record.get(key)) for key in header] for record in records],
        "delimiter": "",
    }


def guess_columns(header: list[str]) -> dict[str, str]:
    """A first guess of which column plays which role, from common names."""
    names = {h.lower(): h for h in header}
    guesses = {
        "text": ("text", "content", "sentence", "comment", "message", "body"),
        "label": ("label", "class", "category", "gold_label", "target"),
        "id": ("id", "comment_id", "external_id", "uid"),
        "split": ("split",),
        "entity1": ("entity1", "e1", "head"),
        "entity2": ("entity2", "e2", "tail"),
        "span1": ("span1",),
        "span2": ("span2",),
    }
    out = {}
    for key, options in guesses.items():
        for option in options:
            if option in names:
                out[key] = names[option]
                break
    return out


def delimiter_label(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(delimiter, delimiter)


__all__ = [
    "IMPORT_JOB_KIND",
    "build_params",
    "clean_import_params",
    "csv_preview",
    "guess_columns",
    "import_options",
    "jsonl_preview",
    "remove_staged",
    "resolve_server_path",
    "source_path",
    "staged_path",
    "stage_upload",
    "start_import",
]
