r"""Rules: the unit an annotator reviews. Four kinds, each a frozen (hashable) dataclass that votes
one label on the examples it matches and abstains elsewhere.

- ``KeywordRule``: any/all of some words or phrases, whole words, case-insensitive by default.
  Text and words are compared after Unicode NFKC normalization and (unless case-sensitive) case
  folding, with runs of whitespace collapsed to one space: "STRASSE" matches "straße", a fullwidth
  "ｆｒｅｅ" matches "free", a decomposed "cafe\u0301" matches "café" (but "cafe" does not). A word
  edge that is a letter, digit, mark or underscore must sit at a word boundary in the text ("free"
  is not in "freedom"); an edge that is punctuation needs no boundary ("c++" is in "c++11").
  Punctuation inside a phrase must appear in the text as written; punctuation next to it is a
  boundary ("click here" is in "(Click here!)").
- ``RegexRule``: an RE2 pattern (linear-time matching: no backtracking, so ``(a+)+$`` cannot hang)
  searched in the raw text. Patterns that need a backtracking engine (backreferences, lookaround)
  are refused with a ``RuleError``, as are patterns over the size limits. As in RE2, ``\b``,
  ``\w``, ``\d`` and ``\s`` are ASCII-only; ``\pL`` (any letter) and ``\p{Greek}`` are
  Unicode; flag ``i`` folds case in all scripts.
- ``PromptRule``: (template, answer words) -> label; matches an example when one of the answer words
  is among the language model's top-k answers for it under the template (read from the cached answer
  index, no inference), optionally plus ``similarity_weight`` x cosine similarity to an anchor
  example; matches when that score reaches ``threshold``.
- ``SimilarityRule``: cosine similarity of the example's embedding to an anchor's >= threshold.

For relation extraction, keyword and regex rules have ``scope="between"`` to look only at the text
between the two entity mentions (``scope="text"``, the default, looks at the whole sentence).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import re2

MAX_WORDS = 100
MAX_WORD_LENGTH = 200
MAX_PATTERN_LENGTH = 2000
MAX_REGEX_MEMORY = 8 << 20  # bytes RE2 may use to compile one pattern
REGEX_FLAGS = frozenset("ims")  # i: ignore case, m: ^/$ at line ends, s: "." matches newline
SCOPES = ("text", "between")
RULE_KINDS = ("keyword", "regex", "prompt", "similarity")


class RuleError(ValueError):
    """A rule that cannot be built or matched; the message says what is wrong in plain words."""


# ---------------------------------------------------------------------------------------------
# text normalization shared by keyword rules and the matching engine


# A run of two or more whitespace characters, or any single whitespace character other than " "
# (a fixed, linear-time pattern; "\x00", the engine's document separator, is not whitespace).
_WS_RUN = re.compile(r"\s{2,}|[^\S ]")


def normalize_text(text: str, case_sensitive: bool = False) -> str:
    """NFKC, then case folding (unless case-sensitive), then every whitespace run -> one space.

    Keyword words and texts go through this same function before they are compared. ASCII text
    takes a fast path (NFKC leaves it unchanged and ``lower`` equals ``casefold`` on it).
    """
    if text.isascii():
        if not case_sensitive:
            text = text.lower()
    else:
        text = unicodedata.normalize("NFKC", text)
        if not case_sensitive:
            text = text.casefold()
    if "  " in text or not text.isprintable():  # only then can there be whitespace to collapse
        text = _WS_RUN.sub(" ", text)
    return text


@lru_cache(maxsize=4096)
def is_word_char(ch: str) -> bool:
    """Letters, digits, marks and connector punctuation (``_``): what a word boundary separates."""
    if ch.isalnum():
        return True
    return unicodedata.category(ch) in ("Mn", "Mc", "Me", "Pc")


def normalize_word(word: str, case_sensitive: bool = False) -> str:
    """A keyword as the engine compares it: normalized like texts, outer spaces removed."""
    return normalize_text(word, case_sensitive).strip(" ")


# ---------------------------------------------------------------------------------------------
# regex validation


def _re2_options(max_mem: int = MAX_REGEX_MEMORY) -> re2.Options:
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False
    return options


def _error_text(exc: Exception) -> str:
    msg = exc.args[0] if exc.args else str(exc)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg)


_UNSUPPORTED_HINTS = (
    ("invalid escape sequence: \\1", "backreferences (\\1) need a backtracking engine"),
    ("invalid escape sequence: \\2", "backreferences need a backtracking engine"),
    ("invalid perl operator: (?=", "lookahead (?=...) needs a backtracking engine"),
    ("invalid perl operator: (?!", "negative lookahead (?!...) needs a backtracking engine"),
    ("invalid perl operator: (?<", "lookbehind (?<...) needs a backtracking engine"),
    ("invalid named capture group", "named groups are written (?P<name>...)"),
)


def compile_regex(pattern: str, flags: str = "i") -> re2.Pattern:
    """Validate and compile ``pattern`` with RE2; raises ``RuleError`` with a clear message."""
    validate_flags(flags)
    validate_regex(pattern)
    return re2.compile(regex_with_flags(pattern, flags), _re2_options())


def regex_with_flags(pattern: str, flags: str) -> str:
    """The pattern with its flags inline, e.g. ``(?i)free``; RE2 sets take patterns this way."""
    return f"(?{''.join(sorted(set(flags)))}){pattern}" if flags else pattern


def validate_flags(flags: str) -> None:
    if not isinstance(flags, str) or not set(flags) <= REGEX_FLAGS:
        raise RuleError(
            f"regex flags must be letters from 'ims' (i: ignore case, m: multi-line, "
            f"s: dot matches newline), got {flags!r}"
        )


def validate_regex(pattern: str) -> None:
    """Raise ``RuleError`` unless ``pattern`` is a usable RE2 pattern within the size limits.

    RE2 matches in time linear in the text, so no accepted pattern can hang a worker; features that
    need backtracking (backreferences, lookaround) are refused instead of run on another engine.
    """
    if not isinstance(pattern, str):
        raise RuleError(f"a regex pattern must be a string, got {type(pattern).__name__}")
    if not pattern:
        raise RuleError("the regex pattern is empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RuleError(
            f"the regex pattern is {len(pattern)} characters long; the limit is "
            f"{MAX_PATTERN_LENGTH}"
        )
    if "\x00" in pattern:
        raise RuleError("the regex pattern contains a NUL character")
    try:
        re2.compile(pattern, _re2_options())
    except re2.error as exc:
        detail = _error_text(exc)
        for needle, hint in _UNSUPPORTED_HINTS:
            if needle in detail:
                raise RuleError(
                    f"regex {pattern!r} is not supported: {hint}; only linear-time (RE2) "
                    f"syntax is accepted ({detail})"
                ) from None
        if "too large" in detail or "repetition size" in detail:
            raise RuleError(
                f"regex {pattern!r} is too large to run safely ({detail}); simplify the repetitions"
            ) from None
        raise RuleError(f"regex {pattern!r} is invalid: {detail}") from None
    except (TypeError, ValueError) as exc:  # e.g. surrogates that cannot be encoded
        raise RuleError(f"regex {pattern!r} is invalid: {exc}") from None


# ---------------------------------------------------------------------------------------------
# rules


def _check_label(label: Any) -> int:
    if isinstance(label, bool) or not isinstance(label, int | float) or int(label) != label:
        raise RuleError(f"a rule's label must be a class index (int >= 0), got {label!r}")
    if label < 0:
        raise RuleError(f"a rule's label must be a class index >= 0, got {label}")
    return int(label)


def _check_index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise RuleError(f"{name} must be an example index (int >= 0), got {value!r}")
    if value < 0:
        raise RuleError(f"{name} must be >= 0, got {value}")
    return int(value)


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise RuleError(f"{name} must be finite, got {value}")
    return value


def _check_scope(scope: Any) -> str:
    if scope not in SCOPES:
        raise RuleError(f"scope must be one of {SCOPES}, got {scope!r}")
    return scope


def _label_name(label: int, label_names: Sequence[str] | None) -> str:
    if label_names is not None and 0 <= label < len(label_names):
        return str(label_names[label])
    return f"class {label}"


def _quoted(words: Sequence[str], joiner: str) -> str:
    quoted = [f'"{w}"' for w in words]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + f" {joiner} " + quoted[-1]


def _where(scope: str) -> str:
    return "the text between the two entities" if scope == "between" else "the text"


@dataclass(frozen=True)
class KeywordRule:
    """Vote ``label`` when the text contains any (or all) of ``words`` as whole words or phrases."""

    words: tuple[str, ...]
    label: int
    mode: Literal["any", "all"] = "any"
    case_sensitive: bool = False
    scope: Literal["text", "between"] = "text"

    kind = "keyword"

    def __post_init__(self) -> None:
        words = self.words
        if isinstance(words, str):
            words = (words,)
        if not isinstance(words, Sequence) or not all(isinstance(w, str) for w in words):
            raise RuleError(f"keyword rule words must be strings, got {self.words!r}")
        if len(words) > MAX_WORDS * 10:  # sized before any work (a set below, not a list scan)
            raise RuleError(f"a keyword rule takes at most {MAX_WORDS} words, got {len(words)}")
        cleaned: list[str] = []
        seen: set[str] = set()
        for w in words:
            w2 = " ".join(w.split())
            if not w2:
                raise RuleError("a keyword rule cannot contain an empty word")
            if "\x00" in w2:
                raise RuleError("a keyword cannot contain a NUL character")
            if len(w2) > MAX_WORD_LENGTH:
                raise RuleError(
                    f"keyword {w2[:40]!r}... is {len(w2)} characters; the limit is "
                    f"{MAX_WORD_LENGTH}"
                )
            if not normalize_word(w2, bool(self.case_sensitive)):
                raise RuleError(f"keyword {w2!r} is empty after Unicode normalization")
            if w2 not in seen:
                seen.add(w2)
                cleaned.append(w2)
        if not cleaned:
            raise RuleError("a keyword rule needs at least one word")
        if len(cleaned) > MAX_WORDS:
            raise RuleError(f"a keyword rule takes at most {MAX_WORDS} words, got {len(cleaned)}")
        if self.mode not in ("any", "all"):
            raise RuleError(f"keyword rule mode must be 'any' or 'all', got {self.mode!r}")
        if not isinstance(self.case_sensitive, bool):
            raise RuleError(f"case_sensitive must be True or False, got {self.case_sensitive!r}")
        object.__setattr__(self, "words", tuple(cleaned))
        object.__setattr__(self, "label", _check_label(self.label))
        object.__setattr__(self, "scope", _check_scope(self.scope))

    @property
    def normalized_words(self) -> tuple[str, ...]:
        """The words as the engine compares them (NFKC, case-folded unless case-sensitive)."""
        return tuple(normalize_word(w, self.case_sensitive) for w in self.words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "words": list(self.words),
            "label": self.label,
            "mode": self.mode,
            "case_sensitive": self.case_sensitive,
            "scope": self.scope,
        }

    def describe(self, label_names: Sequence[str] | None = None, templates: Any = None) -> str:
        joiner = "and" if self.mode == "all" else "or"
        which = "all of" if self.mode == "all" and len(self.words) > 1 else ""
        case = "exact case" if self.case_sensitive else "any case"
        contains = f"contains {which} " if which else "contains "
        return (
            f"{_label_name(self.label, label_names)} when {_where(self.scope)} {contains}"
            f"{_quoted(self.words, joiner)} (whole words, {case})"
        )


@dataclass(frozen=True)
class RegexRule:
    """Vote ``label`` when the RE2 ``pattern`` is found anywhere in the raw text."""

    pattern: str
    label: int
    flags: str = "i"
    scope: Literal["text", "between"] = "text"

    kind = "regex"

    def __post_init__(self) -> None:
        validate_flags(self.flags)
        validate_regex(self.pattern)
        object.__setattr__(self, "flags", "".join(sorted(set(self.flags))))
        object.__setattr__(self, "label", _check_label(self.label))
        object.__setattr__(self, "scope", _check_scope(self.scope))

    @property
    def inline_pattern(self) -> str:
        """The pattern with its flags inline (``(?i)...``)."""
        return regex_with_flags(self.pattern, self.flags)

    def compile(self) -> re2.Pattern:
        return compile_regex(self.pattern, self.flags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pattern": self.pattern,
            "label": self.label,
            "flags": self.flags,
            "scope": self.scope,
        }

    def describe(self, label_names: Sequence[str] | None = None, templates: Any = None) -> str:
        notes = []
        if "i" in self.flags:
            notes.append("ignoring case")
        if "m" in self.flags:
            notes.append("^ and $ at every line")
        if "s" in self.flags:
            notes.append(". matches newlines")
        tail = f" ({', '.join(notes)})" if notes else ""
        return (
            f"{_label_name(self.label, label_names)} when {_where(self.scope)} matches the "
            f"pattern /{self.pattern}/{tail}"
        )


def _template_text(template_id: str, templates: Any) -> str | None:
    if templates is None:
        return None
    found = None
    if isinstance(templates, Mapping):
        found = templates.get(template_id)
    else:
        for t in templates:
            if getattr(t, "id", None) == template_id:
                found = t
                break
    if found is None:
        return None
    return str(getattr(found, "text", found))


@dataclass(frozen=True)
class PromptRule:
    """Vote ``label`` when the LM's top-k answers under ``template_id`` include an answer word.

    score_i = 1[an answer word is in example i's top-k] + similarity_weight * cos(emb_i, anchor);
    the rule matches when score_i >= threshold. With the defaults (weight 0, threshold 1) that is
    just the word hit. ``anchor_index`` indexes the corpus's ``anchor_embeddings`` (typically the
    dev set the rule was proposed from).
    """

    template_id: str
    answer_words: tuple[str, ...]
    label: int
    anchor_index: int | None = None
    similarity_weight: float = 0.0
    threshold: float = 1.0

    kind = "prompt"

    def __post_init__(self) -> None:
        if not isinstance(self.template_id, str) or not self.template_id:
            raise RuleError("a prompt rule needs a template id (non-empty string)")
        words = self.answer_words
        if isinstance(words, str):
            words = (words,)
        if not isinstance(words, Sequence) or not all(isinstance(w, str) for w in words):
            raise RuleError(f"prompt rule answer words must be strings, got {self.answer_words!r}")
        if len(words) > MAX_WORDS * 10:  # sized before any work (a set below, not a list scan)
            raise RuleError(f"a keyword rule takes at most {MAX_WORDS} words, got {len(words)}")
        cleaned: list[str] = []
        seen: set[str] = set()
        for w in words:
            w2 = w.strip()
            if not w2:
                raise RuleError("a prompt rule cannot contain an empty answer word")
            if w2 not in seen:
                seen.add(w2)
                cleaned.append(w2)
        if not cleaned:
            raise RuleError("a prompt rule needs at least one answer word")
        object.__setattr__(self, "answer_words", tuple(cleaned))
        object.__setattr__(self, "label", _check_label(self.label))
        weight = _check_number(self.similarity_weight, "similarity_weight")
        threshold = _check_number(self.threshold, "threshold")
        if weight < 0:
            raise RuleError(f"similarity_weight must be >= 0, got {weight}")
        anchor = self.anchor_index
        if anchor is not None:
            anchor = _check_index(anchor, "anchor_index")
        if weight > 0 and anchor is None:
            raise RuleError("a prompt rule with a similarity term needs an anchor_index")
        if threshold <= 0:
            raise RuleError(
                f"threshold must be > 0 (a threshold of {threshold} would match examples the "
                f"language model gives none of the answer words for)"
                if weight == 0
                else f"threshold must be > 0, got {threshold}"
            )
        if threshold > 1.0 + weight:
            raise RuleError(
                f"threshold {threshold} can never be reached (the largest score is "
                f"1 + similarity_weight = {1.0 + weight})"
            )
        object.__setattr__(self, "anchor_index", anchor)
        object.__setattr__(self, "similarity_weight", weight)
        object.__setattr__(self, "threshold", threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "template_id": self.template_id,
            "answer_words": list(self.answer_words),
            "label": self.label,
            "anchor_index": self.anchor_index,
            "similarity_weight": self.similarity_weight,
            "threshold": self.threshold,
        }

    def describe(self, label_names: Sequence[str] | None = None, templates: Any = None) -> str:
        text = _template_text(self.template_id, templates)
        asked = f'asked "{text}"' if text else f"asked with template {self.template_id}"
        out = (
            f"{_label_name(self.label, label_names)} when the language model, {asked}, "
            f"answers {_quoted(self.answer_words, 'or')}"
        )
        if self.similarity_weight > 0:
            out += (
                f", scoring 1 for that plus {self.similarity_weight:g} x similarity to example "
                f"#{self.anchor_index}, at least {self.threshold:g} in all"
            )
        return out


@dataclass(frozen=True)
class SimilarityRule:
    """Vote ``label`` when cos(embedding_i, anchor embedding) >= ``threshold``."""

    anchor_index: int
    threshold: float
    label: int

    kind = "similarity"

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchor_index", _check_index(self.anchor_index, "anchor_index"))
        threshold = _check_number(self.threshold, "threshold")
        if not -1.0 <= threshold <= 1.0:
            raise RuleError(f"a cosine similarity threshold lies in [-1, 1], got {threshold}")
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "label", _check_label(self.label))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "anchor_index": self.anchor_index,
            "threshold": self.threshold,
            "label": self.label,
        }

    def describe(self, label_names: Sequence[str] | None = None, templates: Any = None) -> str:
        return (
            f"{_label_name(self.label, label_names)} when the text means nearly the same as "
            f"example #{self.anchor_index} (cosine similarity at least {self.threshold:.2f})"
        )


Rule = KeywordRule | RegexRule | PromptRule | SimilarityRule

_CLASSES: dict[str, type] = {
    "keyword": KeywordRule,
    "regex": RegexRule,
    "prompt": PromptRule,
    "similarity": SimilarityRule,
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "keyword": ("words", "label"),
    "regex": ("pattern", "label"),
    "prompt": ("template_id", "answer_words", "label"),
    "similarity": ("anchor_index", "threshold", "label"),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "keyword": ("mode", "case_sensitive", "scope"),
    "regex": ("flags", "scope"),
    "prompt": ("anchor_index", "similarity_weight", "threshold"),
    "similarity": (),
}


def rule_from_dict(d: Mapping[str, Any]) -> Rule:
    """The rule a ``to_dict()`` produced; raises ``RuleError`` naming the bad field."""
    if not isinstance(d, Mapping):
        raise RuleError(f"a rule must be given as a dict, got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in _CLASSES:
        raise RuleError(f"rule kind must be one of {RULE_KINDS}, got {kind!r}")
    fields = {k: v for k, v in d.items() if k != "kind"}
    missing = [k for k in _REQUIRED[kind] if k not in fields]
    if missing:
        raise RuleError(f"a {kind} rule needs the field(s) {', '.join(missing)}")
    unknown = sorted(set(fields) - set(_REQUIRED[kind]) - set(_OPTIONAL[kind]))
    if unknown:
        raise RuleError(f"a {kind} rule has no field(s) {', '.join(unknown)}")
    for key in ("words", "answer_words"):
        if key in fields:
            value = fields[key]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, Sequence):
                raise RuleError(f"{key} must be a list of strings, got {value!r}")
            fields[key] = tuple(value)
    return _CLASSES[kind](**fields)


def rules_from_dicts(items: Sequence[Mapping[str, Any]]) -> list[Rule]:
    return [rule_from_dict(d) for d in items]
