"""Import problems as data: each names the file, the line (or row) and column, and the reason.

An import collects problems while it reads, stops after :data:`MAX_PROBLEMS`, and then raises
:class:`ImportFailed`, which rolls the whole import back. The job's error message is the list of
problems, one per line; ``to_dict`` gives the same list to the UI and the API.
"""

from dataclasses import asdict, dataclass

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, and where."""

    file: str
    reason: str
    line: int | None = None  # physical line in a text file (1-based)
    row: int | None = None  # data row (1-based, header excluded) for CSV/TSV and Parquet
    column: str | int | None = None  # a column or field name, or a character position

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if isinstance(self.column, int):
            where.append(f"column {self.column}")
        elif self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.reason}"


class ImportFailed(Exception):
    """Raised when an import found problems; nothing it read was kept."""

    def __init__(self, problems: list[Problem], truncated: bool = False):
        self.problems = list(problems)
        self.truncated = truncated
        super().__init__(self.message)

    @property
    def message(self) -> str:
        count = len(self.problems)
        head = (
            f"Import failed: {count} problem{'s' if count != 1 else ''} found"
            + (f" (stopped after the first {count})" if self.truncated else "")
            + "; nothing was imported."
        )
        return "\n".join([head, *(f"- {problem}" for problem in self.problems)])

    def to_dict(self) -> dict:
        return {"problems": [p.to_dict() for p in self.problems], "truncated": self.truncated}


class TooManyProblems(Exception):
    """Internal: the problem limit was reached; reading stops."""


class Problems:
    """Collects problems; raises :class:`TooManyProblems` once the limit is reached."""

    def __init__(self, limit: int = MAX_PROBLEMS):
        self.limit = limit
        self.items: list[Problem] = []
        self.truncated = False

    def add(self, file: str, reason: str, **where) -> None:
        # Messages quote values; a NUL in one would make the job's error unstorable.
        reason, file = reason.replace("\x00", "\\x00"), file.replace("\x00", "\\x00")
        self.items.append(Problem(file=file, reason=reason, **where))
        if len(self.items) >= self.limit:
            self.truncated = True
            raise TooManyProblems

    def __bool__(self) -> bool:
        return bool(self.items)

    def failure(self) -> ImportFailed:
        return ImportFailed(self.items, truncated=self.truncated)
