"""Dataset import pipeline: readers → parsers → writers, errors as data, all or nothing.

``import_examples(project=..., path=..., options=ImportOptions(format=...))`` is the entry point;
:mod:`apps.datasets.import_services` wraps it for uploads, server paths and jobs.
"""

from apps.datasets.pipeline.exceptions import MAX_PROBLEMS, ImportFailed, Problem
from apps.datasets.pipeline.run import FORMATS, ImportOptions, detect_format, import_examples

__all__ = [
    "FORMATS",
    "MAX_PROBLEMS",
    "ImportFailed",
    "ImportOptions",
    "Problem",
    "detect_format",
    "import_examples",
]
