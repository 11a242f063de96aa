"""Real text for the LoRC benchmark: calibration and evaluation halves that never overlap."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

SOURCES = ("hh-rlhf", "trec", "sms")


def _hh(data: Path) -> list[str]:
    with gzip.open(data / "hh-rlhf-harmless" / "test.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["chosen"].strip() for line in fh]


def _trec(data: Path, split: str) -> list[str]:
    path = data / "trec" / f"{split}.json"
    return [json.loads(line)["sentence"] for line in path.read_text().splitlines() if line.strip()]


def _sms(data: Path) -> list[str]:
    rows = (data / "sms-spam-collection" / "SMSSpamCollection").read_text(encoding="utf-8")
    return [line.split("\t", 1)[1] for line in rows.splitlines() if "\t" in line]


def load_texts(data: Path) -> dict[str, dict[str, list[str]]]:
    """{source: {"calib": texts, "eval": texts}}: HH-RLHF dialogues (first half / second half of
    the file), TREC questions (train / test split), SMS messages (even / odd rows)."""
    hh, sms = _hh(data), _sms(data)
    half = len(hh) // 2
    return {
        "hh-rlhf": {"calib": hh[:half], "eval": hh[half:]},
        "trec": {"calib": _trec(data, "train"), "eval": _trec(data, "test")},
        "sms": {"calib": sms[0::2], "eval": sms[1::2]},
    }
