"""The bad-input corpus (``tests/datasets/bad_inputs/``) against every importer.

Each file is one case in one format (a ``wrench_<case>`` folder for WRENCH). Every case must end
in a clear import problem — the user's file name, the reason in words, the line or row where
there is one — never an internal error, and leave the database exactly as it was. A new case
is a new file here and a row in ``EXPECTED``; a case without a row fails the test.
"""

from pathlib import Path

import pytest

from apps.datasets.models import Example
from apps.datasets.pipeline import ImportFailed, ImportOptions, import_examples
from apps.jobs.models import Job
from apps.projects.models import Project

CORPUS = Path(__file__).parent / "bad_inputs"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}

# case -> (words the reason must hold, whether the problem must say where: line or row)
EXPECTED = {
    "empty": ("empty", False),
    "header_only": ("no examples found", False),
    "duplicate_ids": ("duplicate id", True),
    "unknown_label": ("unknown label", True),
    "truncated": ("not a readable Parquet file", False),
    "renamed_zip": ("", False),  # the format's own complaint: not Parquet, not UTF-8 / JSON
    "long_text": ("over the limit of 100 (FRUGAL_MAX_TEXT_CHARS)", True),
    "nul_id": ("NUL character", True),
    "deep": ("nested too deeply", True),
    "mixed_endings": ("mixes line endings", True),
    "bom": ("text", True),  # the header is read past the byte order mark: 'body' is no text
    "oversize": ("over the import limit of 100 bytes", False),
}
# Cases that live in the upload step (tests/datasets/test_import_views.py covers them too).
UPLOAD_ONLY = {"not_a_zip.zip", "zip_slip.zip"}


def corpus() -> list[Path]:
    return sorted(
        p
        for p in CORPUS.iterdir()
        if (p.suffix in FORMATS or p.name.startswith("wrench_")) and p.name not in UPLOAD_ONLY
    )


def case_of(path: Path) -> str:
    return path.name.removeprefix("wrench_").split(".")[0]


def format_of(path: Path) -> str:
    return "wrench" if path.is_dir() else FORMATS[path.suffix]


def test_every_corpus_file_has_an_expectation():
    missing = sorted({case_of(p) for p in corpus()} - set(EXPECTED))
    assert not missing, f"add these cases to EXPECTED in {__file__}: {missing}"
    assert len(corpus()) >= 40


def snapshot(project) -> tuple:
    project = Project.objects.get(pk=project.pk)
    rows = sorted(Example.objects.values_list("project_id", "external_id", "text", "gold_label"))
    return (project.labels, rows, Job.objects.count(), Project.objects.count())


@pytest.mark.django_db
@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_bad_input_is_a_clear_problem_and_changes_nothing(project, settings, path):
    settings.FRUGAL_MAX_TEXT_CHARS = 100
    if case_of(path) == "oversize":
        settings.FRUGAL_IMPORT_MAX_BYTES = 100
    Example.objects.create(project=project, external_id="kept", text="already here", split="dev")
    before = snapshot(project)
    display = f"my {path.name}"  # the user's name for it, not the name it is stored under
    words, located = EXPECTED[case_of(path)]

    with pytest.raises(ImportFailed) as failed:
        import_examples(
            project=project,
            path=path,
            options=ImportOptions(format_of(path), display_name=display),
        )

    problems = failed.value.problems
    assert problems, path.name
    first = problems[0]
    assert first.file.startswith(display), (first, display)
    assert words.lower() in first.reason.lower(), first
    if located:
        assert first.line is not None or first.row is not None, first
    message = failed.value.message
    assert "Traceback" not in message and "Error(" not in message and "Internal" not in message
    assert str(CORPUS) not in message and str(path) not in message, message
    assert "\x00" not in message
    assert snapshot(project) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, line", [("deep.jsonl", 2), ("deep.json", 2), ("mixed_endings.csv", 3)]
)
def test_problems_name_the_line(project, name, line):
    path = CORPUS / name
    with pytest.raises(ImportFailed) as failed:
        import_examples(project=project, path=path, options=ImportOptions(format_of(path)))
    assert failed.value.problems[0].line == line, failed.value.problems[0]


@pytest.mark.django_db
def test_text_at_the_limit_is_accepted(project, settings, tmp_path):
    settings.FRUGAL_MAX_TEXT_CHARS = 100
    path = tmp_path / "ok.jsonl"
    path.write_text('{"id": "a", "text": "%s"}\n' % ("y" * 100))
    assert import_examples(project=project, path=path, options=ImportOptions("jsonl"))["rows"] == 1
