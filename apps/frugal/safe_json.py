"""JSON from people: parsed with a nesting limit and without NUL characters.

``loads`` raises :class:`UnsafeJSON`, a ``json.JSONDecodeError``, so callers that already turn
malformed JSON into a message handle these too::

    try:
        value = safe_json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).")

Without it, JSON nested 100,000 deep ends in a ``RecursionError`` (a 500), and a ``\\u0000``
in a string reaches PostgreSQL, which refuses it in text and in ``jsonb`` (another 500).
"""

import json

MAX_DEPTH = 64


class UnsafeJSON(json.JSONDecodeError):
    """Valid JSON Frugal refuses: nested too deeply, or holding a NUL character."""


def nesting_overflow(doc: str, max_depth: int = MAX_DEPTH) -> int | None:
    """Index of the bracket that opens level ``max_depth + 1`` outside strings, or ``None``.

    A linear scan, so that a document too deep is refused before a recursive parser sees it.
    """
    depth = 0
    in_string = escaped = False
    if doc.count("[") + doc.count("{") <= max_depth:
        return None  # cannot be too deep: the common case costs two counts
    for index, char in enumerate(doc):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return index
        elif char in "]}":
            depth -= 1
    return None


def find_nul(value, path: str = "") -> str | None:
    """The path (``a.b[2]``) of the first string or key holding a NUL character, or ``None``."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where or "(the value)"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return child_path
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def check(doc: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`UnsafeJSON` when ``doc`` is nested deeper than ``max_depth``."""
    index = nesting_overflow(doc, max_depth)
    if index is not None:
        raise UnsafeJSON(f"nested deeper than {max_depth} levels", doc, index)


def loads(doc: str | bytes, max_depth: int = MAX_DEPTH):
    """``json.loads`` that refuses deep nesting and NUL characters (:class:`UnsafeJSON`)."""
    if isinstance(doc, bytes | bytearray):
        doc = doc.decode("utf-8")
    check(doc, max_depth)
    try:
        value = json.loads(doc)
    except RecursionError:  # a limit above Python's own
        raise UnsafeJSON("nested too deeply", doc, 0) from None
    where = find_nul(value)
    if where is not None:
        position = max(doc.find("\\u0000"), 0)
        raise UnsafeJSON(f"a NUL character (\\u0000) in {where}", doc, position)
    return value
