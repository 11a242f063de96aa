"""Students (and the encoder teacher) as Hugging Face sequence classifiers.

Every student is an ``AutoModelForSequenceClassification``, so ``save_pretrained`` writes a folder
that ``transformers`` loads alone. Three kinds:
- a shallower copy of the teacher encoder: its first L layers, or L layers spread evenly
  ("every other layer" for L = N/2);
- a smaller hub model by name or local folder;
- a frozen encoder with a trainable head (``freeze_encoder=True`` on either of the above).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

LayerPick = Literal["first", "spread"]


@dataclass
class Encoded:
    """Tokenized texts: input_ids and attention_mask (N, T) int64, padded to the longest row."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def batch(
        self, idx: np.ndarray | slice, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Rows idx, trimmed to the longest of them: {"input_ids", "attention_mask"} (B, T'),
        moved to ``device`` when given."""
        mask = self.attention_mask[idx]
        width = max(1, int(mask.sum(1).max()))
        out = {"input_ids": self.input_ids[idx][:, :width], "attention_mask": mask[:, :width]}
        return out if device is None else {k: v.to(device) for k, v in out.items()}

    def subset(self, idx: np.ndarray) -> Encoded:
        return Encoded(self.input_ids[idx], self.attention_mask[idx])


def encode(tokenizer, texts: Sequence[str], max_length: int = 64) -> Encoded:
    """Tokenize once (truncation to ``max_length``); batches trim padding later."""
    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return Encoded(enc["input_ids"].long(), enc["attention_mask"].long())


def _layer_list(model) -> torch.nn.ModuleList:
    """The encoder's transformer blocks (BERT-style ``encoder.layer``)."""
    base = model.base_model
    try:
        return base.encoder.layer
    except AttributeError as exc:
        raise ValueError(
            f"{type(model).__name__} has no encoder.layer list: pick a BERT-style teacher "
            "or name a smaller hub model instead"
        ) from exc


def spread_layers(n_total: int, n_keep: int) -> list[int]:
    """n_keep layer indices spread evenly over n_total ending with the last: 6→3 is [1, 3, 5]."""
    if not 1 <= n_keep <= n_total:
        raise ValueError(f"cannot keep {n_keep} of {n_total} layers")
    step = n_total / n_keep
    return [int(round(step * (i + 1))) - 1 for i in range(n_keep)]


def build_classifier(
    name_or_path: str | None = None,
    *,
    n_classes: int,
    label_names: Sequence[str] | None = None,
    n_layers: int | None = None,
    layer_pick: LayerPick = "first",
    freeze_encoder: bool = False,
    seed: int = 0,
):
    """(model, tokenizer): a sequence classifier from ``name_or_path`` (default all-MiniLM-L6-v2)
    keeping ``n_layers`` of its blocks (all when None), the head initialized with ``seed``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from models.lm import default_encoder

    name = name_or_path or default_encoder()
    names = list(label_names) if label_names else [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} label names for {n_classes} classes")
    config = AutoConfig.from_pretrained(name)
    config.num_labels = n_classes
    config.id2label = dict(enumerate(names))
    config.label2id = {v: i for i, v in enumerate(names)}
    total = int(getattr(config, "num_hidden_layers", 0) or 0)
    keep = total if n_layers is None else int(n_layers)
    if total and not 1 <= keep <= total:
        raise ValueError(f"{name} has {total} layers: cannot keep {keep}")
    torch.manual_seed(seed)
    if layer_pick == "first" and keep < total:
        config.num_hidden_layers = keep  # from_pretrained then loads blocks 0..keep-1 only
        model = AutoModelForSequenceClassification.from_pretrained(name, config=config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(name, config=config)
        if keep < total:
            layers = _layer_list(model)
            kept = spread_layers(total, keep)
            model.base_model.encoder.layer = torch.nn.ModuleList([layers[i] for i in kept])
            model.config.num_hidden_layers = keep
    if freeze_encoder:
        for p in model.base_model.parameters():
            p.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(name)
    model.eval()
    return model, tokenizer


def n_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def save_student(model, tokenizer, folder) -> None:
    """A Hugging Face model folder: config, weights (safetensors) and tokenizer."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_student(folder):
    """(model, tokenizer) from a folder written by ``save_student``: transformers alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    model.eval()
    return model, AutoTokenizer.from_pretrained(folder)
