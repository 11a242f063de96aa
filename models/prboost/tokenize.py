"""The one tokenizer that proposing and matching share.

A keyword rule matches where its normalized words appear in the normalized text with a word
boundary on each side (``matching.KeywordScanner``; a boundary lies between a word character and a
non-word character, ``rules.is_word_char``: letters, digits, combining marks, ``_``). The n-gram
proposer cuts texts into words with the same definitions, so every n-gram it proposes from a text
matches that text:

- text is normalized first (``rules.normalize_text``: NFKC, case folding, whitespace runs → " "),
  exactly as the matcher normalizes it;
- a word is a maximal run of word characters, optionally joined by one inner apostrophe
  ("don't", "l’homme"): combining marks stay inside the word (Devanagari "हिन्दी" is one word);
- an n-gram joins consecutive words only when the text between them is one space: no n-gram
  crosses punctuation ("horrible, horrible" gives no bigram).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.prboost.rules import is_word_char, normalize_text, normalize_word

APOSTROPHES = frozenset("'’")


@dataclass(frozen=True)
class Token:
    """A word of a normalized text: ``text[start:end]``; ``joined`` is True when one space (and
    nothing else) separates it from the previous word, so an n-gram may span the two."""

    text: str
    start: int
    end: int
    joined: bool


def tokenize(text: str, *, case_sensitive: bool = False) -> list[Token]:
    """The words of ``normalize_text(text)`` (module doc), in order."""
    norm = normalize_text(text, case_sensitive)
    out: list[Token] = []
    n = len(norm)
    i = 0
    prev_end = -1
    while i < n:
        if not is_word_char(norm[i]):
            i += 1
            continue
        start = i
        while i < n:
            if is_word_char(norm[i]) or (
                norm[i] in APOSTROPHES and i + 1 < n and is_word_char(norm[i + 1]) and i > start
            ):
                i += 1
            else:
                break
        joined = prev_end >= 0 and norm[prev_end:start] == " "
        out.append(Token(norm[start:i], start, i, joined))
        prev_end = i
    return out


def words(text: str) -> list[str]:
    """The words of a text (normalized, case-folded)."""
    return [t.text for t in tokenize(text)]


def ngram_spans(tokens: list[Token], n: int) -> list[tuple[int, int]]:
    """(first, last + 1) token ranges of the n-grams whose words are all joined by one space."""
    out = []
    run_start = 0
    for j, tok in enumerate(tokens):
        if not tok.joined:
            run_start = j
        if j - run_start + 1 >= n:
            out.append((j - n + 1, j + 1))
    return out


def phrase(tokens: list[Token], lo: int, hi: int) -> str:
    """The n-gram tokens[lo:hi] as a keyword (words joined by one space)."""
    return " ".join(t.text for t in tokens[lo:hi])


def is_stable(word: str, case_sensitive: bool = False) -> bool:
    """True when the matcher's normalization leaves ``word`` unchanged (a few code points, e.g.
    some that case-fold into a combining sequence, are not; such words are not proposed)."""
    return normalize_word(word, case_sensitive) == word


__all__ = ["Token", "is_stable", "ngram_spans", "phrase", "tokenize", "words"]
