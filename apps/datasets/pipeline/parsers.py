"""Parsers: turn a raw record into an example row, checking every value.

A row is the tuple ``(external_id, split, text, entities, gold_label, label, confidence,
label_source, label_version, votes)``. Problems found in a record are reported with its location
and the record is skipped (the import fails at the end anyway: it is all or nothing).

Label rule (also in the README): a label value is a label *name* or a label *index*.
- A project that already has labels maps names to their index (exactly, else ignoring case);
  an integer (or a string of digits) that is not a name is taken as an index, and must be one.
  Anything else is an "unknown label" problem.
- A project with no labels yet takes them from the data: WRENCH folders from ``label.json``;
  other formats from the values themselves — new names are appended in order of first
  appearance, and an integer ``i`` is label index ``i`` (named ``"i"`` unless the data names it).
- ``-1``, an empty string and null mean "no label".
"""

import html
import json
import math
import re

from apps.datasets.models import LabelSource, Split
from apps.datasets.pipeline.exceptions import Problems
from apps.datasets.pipeline.readers import Record
from apps.projects.models import TaskType

SPLIT_ALIASES = {
    "pool": Split.POOL.value,
    "train": Split.POOL.value,
    "unlabeled": Split.POOL.value,
    "dev": Split.DEV.value,
    "valid": Split.DEV.value,
    "validation": Split.DEV.value,
    "val": Split.DEV.value,
    "test": Split.TEST.value,
}
SOURCES = {choice.value for choice in LabelSource}
MAX_ID_LENGTH = 200

# Canonical field names a record may carry (after column mapping).
FIELDS = (
    "id",
    "text",
    "split",
    "gold_label",
    "label",
    "confidence",
    "source",
    "version",
    "entities",
    "entity1",
    "entity2",
    "span1",
    "span2",
    "votes",
    "weak_labels",
)


class BadValue(ValueError):
    """A value that cannot be used; ``column`` names the field it came from."""

    def __init__(self, reason: str, column: str | None = None):
        super().__init__(reason)
        self.column = column


_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_markup(text: str) -> str:
    """``text`` with HTML entities decoded (``&amp;`` → ``&``, ``&#39;`` → ``'``), ``<br>``
    tags as line breaks and byte order marks removed (the import's "clean" option)."""
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")
    if "<" in text:
        text = _BREAK.sub("\n", text)
    if "&" in text:
        text = html.unescape(text)
        text = _BREAK.sub("\n", text)  # an escaped &lt;br /&gt; is a break too
    return text


class LabelMap:
    """Maps label names or indexes to indexes of the project's label list (see module doc)."""

    def __init__(self, labels: list[str], grow: bool):
        self.labels = [str(name) for name in labels]
        self.grow = grow
        self._rebuild()

    def _rebuild(self) -> None:
        self.by_name = {name: i for i, name in enumerate(self.labels)}
        lower: dict[str, int | None] = {}
        for i, name in enumerate(self.labels):
            lower[name.lower()] = None if name.lower() in lower else i
        self.by_lower = lower

    def _describe(self) -> str:
        if not self.labels:
            return "the project has no labels"
        shown = ", ".join(f"{i}={name}" for i, name in enumerate(self.labels[:12]))
        return f"the project's labels are {shown}{', ...' if len(self.labels) > 12 else ''}"

    def index(self, value) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool):
            raise BadValue(f"a label must be a name or an index, not {value!r}")
        if isinstance(value, float):
            if math.isnan(value):
                return None
            if not value.is_integer():
                raise BadValue(f"label {value!r} is not an index")
            value = int(value)
        if isinstance(value, int):
            if value == -1:
                return None
            if 0 <= value < len(self.labels):
                return value
            if self.grow and 0 <= value < 10_000:
                self.labels.extend(str(i) for i in range(len(self.labels), value + 1))
                self._rebuild()
                return value
            raise BadValue(f"unknown label {value}: {self._describe()}")
        if isinstance(value, str):
            name = value.strip()
            if not name or name == "-1":
                return None
            if "\x00" in name:
                raise BadValue("the label contains a NUL character")
            found = self.by_name.get(name)
            if found is None:
                found = self.by_lower.get(name.lower())
            if found is not None:
                return found
            if name.isdigit():
                return self.index(int(name))
            if self.grow:
                self.labels.append(name)
                self._rebuild()
                return len(self.labels) - 1
            raise BadValue(f"unknown label '{name}': {self._describe()}")
        raise BadValue(f"a label must be a name or an index, not {type(value).__name__}")


def _json_value(value, column: str):
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadValue(f"not valid JSON ({exc.msg})", column) from None
        except RecursionError:
            raise BadValue("not valid JSON (nested too deeply)", column) from None
    return value


def _span(value, column: str) -> tuple[int, int] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise BadValue(f"a span must be two character offsets, got '{value}'", column) from None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise BadValue(f"a span must be two character offsets [start, end], got {value!r}", column)
    return int(value[0]), int(value[1])


class RowMaker:
    """Checks one canonical record and returns a row (or ``None`` after reporting problems)."""

    def __init__(
        self,
        *,
        labels: LabelMap,
        task_type: str,
        default_split: str,
        problems: Problems,
        labels_fixed_for_votes: bool,
        max_text_chars: int | None = None,
        clean_text: bool = False,
    ):
        self.labels = labels
        # Relation extraction keeps its text exact: entity spans are offsets into it.
        self.clean_text = clean_text and task_type != TaskType.RELATION_EXTRACTION
        self.relation = task_type == TaskType.RELATION_EXTRACTION
        self.default_split = default_split
        self.problems = problems
        self.check_vote_range = labels_fixed_for_votes
        self.max_text_chars = max_text_chars or None

    def make(self, record: Record, fields: dict, fallback_id: str, names: dict | None = None):
        """The row, or ``None``; ``names`` maps field names to the file's own column names."""
        problems_before = len(self.problems.items)
        try:
            row = self._make(record, fields, fallback_id)
        except BadValue as exc:
            column = exc.column
            if names and column in names:
                column = names[column]
            self.problems.add(record.file, str(exc), **record.where(column))
            return None
        return row if len(self.problems.items) == problems_before else None

    def _make(self, record: Record, f: dict, fallback_id: str):
        # The hot loop of every import (a million calls for a million rows): the common cases
        # (a plain string, a known split name, no label) are tested first.
        get = f.get
        text = get("text")
        if type(text) is not str:
            if text is None:
                raise BadValue("the text is missing", "text")
            if not isinstance(text, str):
                raise BadValue(f"the text must be a string, not {type(text).__name__}", "text")
        if self.clean_text:
            text = clean_markup(text)
        if not text or text.isspace():
            raise BadValue("the text is empty", "text")
        if "\x00" in text:
            raise BadValue("the text contains a NUL character", "text")
        if self.max_text_chars is not None and len(text) > self.max_text_chars:
            raise BadValue(
                f"the text has {len(text):,} characters, over the limit of "
                f"{self.max_text_chars:,} (FRUGAL_MAX_TEXT_CHARS)",
                "text",
            )

        raw_id = get("id")
        if type(raw_id) is str:
            external_id = raw_id.strip() or fallback_id
        elif raw_id is None:
            external_id = fallback_id
        elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
            external_id = str(raw_id).strip() or fallback_id
        else:
            raise BadValue(f"an id must be a string or an integer, not {raw_id!r}", "id")
        if len(external_id) > MAX_ID_LENGTH:
            raise BadValue(f"the id is longer than {MAX_ID_LENGTH} characters", "id")
        if "\x00" in external_id:
            raise BadValue("the id contains a NUL character", "id")

        split_value = get("split")
        split = SPLIT_ALIASES.get(split_value) if type(split_value) is str else None
        if split is None:
            if split_value is None or (isinstance(split_value, str) and not split_value.strip()):
                split = self.default_split
            else:
                split = SPLIT_ALIASES.get(str(split_value).strip().lower())
                if split is None:
                    raise BadValue(
                        f"unknown split '{split_value}' (use pool/train, dev/valid or test)",
                        "split",
                    )

        gold_label = get("gold_label")
        if gold_label is not None:
            gold_label = self._label(gold_label, "gold_label")
        label = get("label")
        if label is not None:
            label = self._label(label, "label")
        confidence = get("confidence")
        if confidence is not None:
            if isinstance(confidence, str):
                confidence = confidence.strip() or None
            try:
                confidence = None if confidence is None else float(confidence)
            except (TypeError, ValueError):
                raise BadValue(f"confidence {confidence!r} is not a number", "confidence") from None
            if confidence is not None and (math.isnan(confidence) or not 0 <= confidence <= 1):
                raise BadValue(f"confidence {confidence} is not between 0 and 1", "confidence")
        source = get("source") or ""
        if source not in SOURCES:
            raise BadValue(f"unknown label source '{source}' (gold, rules or model)", "source")
        version = get("version")
        version = str(version)[:64] if version else ""
        if "\x00" in version:
            raise BadValue("the version contains a NUL character", "version")

        entities = self._entities(text, f)
        if self.relation and entities is None:
            raise BadValue(
                "a relation example needs two entity mentions (entities, or entity1/entity2 "
                "with span1/span2)",
                "entities",
            )
        votes = self._votes(f)
        return (
            external_id,
            split,
            text,
            entities,
            gold_label,
            label,
            confidence,
            source,
            version,
            votes,
        )

    def _label(self, value, column: str) -> int | None:
        try:
            return self.labels.index(value)
        except BadValue as exc:
            exc.column = column
            raise

    def _entities(self, text: str, f: dict):
        get = f.get
        if (
            get("entities") is None
            and get("entity1") is None
            and get("entity2") is None
            and get("span1") is None
            and get("span2") is None
        ):
            return None
        entities = _json_value(f.get("entities"), "entities")
        if entities is None:
            mentions = [f.get("entity1"), f.get("entity2")]
            spans = [_span(f.get("span1"), "span1"), _span(f.get("span2"), "span2")]
            if all(m is None or m == "" for m in mentions) and all(s is None for s in spans):
                return None
            entities = []
            for n, (mention, span) in enumerate(zip(mentions, spans), start=1):
                if span is None:
                    if not isinstance(mention, str) or not mention:
                        raise BadValue(f"entity {n} is missing", f"entity{n}")
                    start = text.find(mention)
                    if start < 0:
                        raise BadValue(
                            f"entity {n} '{mention}' does not occur in the text", f"entity{n}"
                        )
                    span = (start, start + len(mention))
                entity = {"start": span[0], "end": span[1]}
                if isinstance(mention, str) and mention:
                    entity["text"] = mention
                entities.append(entity)
        if not isinstance(entities, list) or not entities:
            raise BadValue("entities must be a list of mentions with start and end", "entities")
        if self.relation and len(entities) != 2:
            raise BadValue(
                f"a relation example needs exactly two entities, got {len(entities)}", "entities"
            )
        checked = []
        for n, entity in enumerate(entities, start=1):
            if not isinstance(entity, dict):
                raise BadValue(f"entity {n} must be an object with start and end", "entities")
            start, end = entity.get("start"), entity.get("end")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
                raise BadValue(f"entity {n} needs integer start and end offsets", "entities")
            column = (
                f"span{n}"
                if f.get("entity1") is not None or f.get("span1") is not None
                else "entities"
            )
            if not 0 <= start < end <= len(text):
                raise BadValue(
                    f"entity {n} span [{start}, {end}] is outside the text "
                    f"(which has {len(text)} characters)",
                    column,
                )
            mention = entity.get("text")
            if mention is not None and text[start:end] != mention:
                raise BadValue(
                    f"entity {n} '{mention}' does not match the text at [{start}, {end}] "
                    f"('{text[start:end]}')",
                    column,
                )
            checked.append({"text": text[start:end], "start": start, "end": end})
        return checked

    def _votes(self, f: dict):
        votes, weak = f.get("votes"), f.get("weak_labels")
        if votes is None and weak is None:
            return None
        votes = _json_value(votes, "votes")
        weak = _json_value(weak, "weak_labels")
        if votes is None and weak is None:
            return None
        if votes is None:
            votes = {}
        if not isinstance(votes, dict):
            raise BadValue("votes must be an object {source: [label index, ...]}", "votes")
        if weak is not None:
            votes = {**votes, "external": weak} if votes else {"external": weak}
        limit = len(self.labels.labels) if self.check_vote_range else None
        for key, values in votes.items():
            column = "weak_labels" if key == "external" and weak is not None else "votes"
            if isinstance(key, str) and "\x00" in key:
                raise BadValue("a vote source name contains a NUL character", column)
            if not isinstance(values, list) or (
                values and (set(map(type, values)) != {int} or min(values) < -1)
            ):
                raise BadValue(
                    f"votes of '{key}' must be a list of label indexes (-1 = abstain)", column
                )
            if limit is not None and values and max(values) >= limit:
                raise BadValue(f"votes of '{key}' name a label index over {limit - 1}", column)
        return votes
