"""Preference pairs as plain containers, and the HH-RLHF dialogue split.

A pair is (prompt, chosen, rejected) plus an optional source; ``PairSet`` holds N of them as lists.
HH-RLHF stores two whole dialogues that share every turn but the last assistant answer:
``split_dialogue`` cuts them into the shared prompt and the two final responses.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "PairSet",
    "split_dialogue",
    "load_hh_rlhf",
    "reward_text",
    "DialogueError",
]

ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"


class DialogueError(ValueError):
    """Two transcripts that cannot be split into a shared prompt and two responses."""


@dataclass
class PairSet:
    """N preference pairs: ``prompts``, ``chosen``, ``rejected``, ``sources``, ``ids`` (N,)."""

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    sources: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if not (len(self.chosen) == len(self.rejected) == n):
            raise ValueError("prompts, chosen and rejected must have the same length")
        if not self.sources:
            self.sources = [""] * n
        if not self.ids:
            self.ids = [str(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: Sequence[int] | np.ndarray) -> PairSet:
        rows = [int(r) for r in rows]
        return PairSet(
            [self.prompts[r] for r in rows],
            [self.chosen[r] for r in rows],
            [self.rejected[r] for r in rows],
            [self.sources[r] for r in rows],
            [self.ids[r] for r in rows],
        )


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) of two transcripts sharing a prefix.

    The prompt is everything up to and including the last ``"\\n\\nAssistant:"`` marker the two
    transcripts share; the responses are what follows it, stripped. Raises ``DialogueError`` when
    the transcripts share no assistant turn.
    """
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n + len(ASSISTANT))
    # the marker must lie inside the shared prefix in both texts
    while cut >= 0 and (
        cut + len(ASSISTANT) > n or rejected[cut : cut + len(ASSISTANT)] != ASSISTANT
    ):
        cut = chosen.rfind(ASSISTANT, 0, cut)
    if cut < 0:
        if chosen == rejected:
            raise DialogueError("the two transcripts are identical")
        raise DialogueError("the transcripts share no '\\n\\nAssistant:' turn")
    end = cut + len(ASSISTANT)
    prompt = chosen[:end]
    return prompt.strip(), chosen[end:].strip(), rejected[end:].strip()


def load_hh_rlhf(path: str | Path) -> PairSet:
    """HH-RLHF pairs from a (gzipped) JSONL of ``{"chosen", "rejected"}`` transcripts.

    Pairs that cannot be split (identical transcripts) are skipped; ids are 0-based line numbers.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "test.jsonl.gz"
    opener = gzip.open if path.suffix == ".gz" else open
    prompts, chosen, rejected, ids = [], [], [], []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                p, c, r = split_dialogue(row["chosen"], row["rejected"])
            except DialogueError:
                continue
            prompts.append(p)
            chosen.append(c)
            rejected.append(r)
            ids.append(str(i))
    return PairSet(prompts, chosen, rejected, ["hh-rlhf-harmless"] * len(ids), ids)


def last_turn(prompt: str, max_chars: int = 400) -> str:
    """The last human message of a dialogue prompt (the context a reward model needs most)."""
    text = prompt
    if text.endswith(ASSISTANT.strip()):
        text = text[: -len(ASSISTANT.strip())]
    k = text.rfind("Human:")
    if k >= 0:
        text = text[k + len("Human:") :]
    return text.strip()[-max_chars:]


def reward_text(prompt: str, response: str) -> str:
    """The text a reward model reads: the last human turn, a separator, the response."""
    return f"{last_turn(prompt)} [SEP] {response}"
