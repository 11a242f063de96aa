"""Bradley–Terry reward models r(prompt, response) → scalar on cached encoder outputs.

Two kinds, both reading ``models.dorm.features.EncodedTexts`` (one row per text):
- ``"head"``: frozen pooled features (N, D) → linear/MLP head (the fast baseline);
- ``"top"``: the top ``n_top`` transformer layers of the encoder, initialised from the pretrained
  weights and fine-tuned on the cached activations of the frozen layers below them (N, T, D), then
  mean pooling and a linear head: the text itself is learned, at a fraction of a full fine-tune.

``PairData`` pairs rows of the text table: pair i compares text ``chosen_idx[i]`` with
``rejected_idx[i]``. The pair loss is ℓ_i = −log σ(r(chosen_i) − r(rejected_i)); ``fit`` minimises
Σ_i w_i ℓ_i / Σ_i w_i (+ weight decay) with Adam on mini-batches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.dorm.features import EncodedTexts

__all__ = [
    "PairData",
    "RewardConfig",
    "RewardModel",
    "build_reward_model",
    "fit",
    "pair_margins",
    "pair_losses",
    "accuracy",
]

Progress = Callable[[float, str], None]


@dataclass
class RewardConfig:
    """What reward model to build and how to train it (defaults chosen on validation data)."""

    kind: str = "head"  # "head" (frozen features + head) or "top" (fine-tune the top layers)
    hidden: int = 0  # head: 0 = linear, else an MLP with this many hidden units
    epochs: int = 3
    lr: float = 3e-4
    head_lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 32
    dropout: float = 0.1
    seed: int = 0


@dataclass
class PairData:
    """Pairs over a table of encoded texts: ``chosen_idx``/``rejected_idx`` (P,) int64 rows."""

    texts: EncodedTexts
    chosen_idx: np.ndarray
    rejected_idx: np.ndarray
    _pooled: torch.Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.chosen_idx)

    def subset(self, rows: np.ndarray) -> PairData:
        rows = np.asarray(rows, dtype=np.int64)
        return PairData(self.texts, self.chosen_idx[rows], self.rejected_idx[rows], self._pooled)

    def flipped(self, rows: np.ndarray) -> PairData:
        """A copy with chosen and rejected swapped on ``rows`` (label noise, a re-judged flip)."""
        c, r = self.chosen_idx.copy(), self.rejected_idx.copy()
        c[rows], r[rows] = self.rejected_idx[rows], self.chosen_idx[rows]
        return PairData(self.texts, c, r, self._pooled)

    def pooled(self) -> torch.Tensor:
        if self._pooled is None:
            self._pooled = torch.from_numpy(self.texts.pooled)
        return self._pooled

    def token_batch(self, text_rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden (B, T', D) float32 and mask (B, T') bool, trimmed to the longest text."""
        mask = self.texts.mask[text_rows]
        t = max(int(mask.sum(1).max()), 1)
        hidden = torch.from_numpy(self.texts.hidden[text_rows, :t].astype(np.float32))
        return hidden, torch.from_numpy(mask[:, :t])


class RewardModel(nn.Module):
    """r(text) for rows of a ``PairData`` text table; ``kind`` says which inputs it reads."""

    def __init__(self, kind: str, dim: int, hidden: int = 0, layers: nn.ModuleList | None = None):
        super().__init__()
        self.kind = kind
        self.layers = layers if layers is not None else nn.ModuleList()
        if hidden:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1)
            )
        else:
            self.head = nn.Linear(dim, 1)

    @property
    def device(self) -> torch.device:
        """Where the parameters are; inputs (kept on the CPU by ``PairData``) move there."""
        return next(self.head.parameters()).device

    def forward(self, data: PairData, text_rows: np.ndarray) -> torch.Tensor:
        """Rewards (B,) of the texts ``text_rows`` (B,), on the model's device."""
        device = self.device
        if self.kind == "head":
            x = data.pooled()[torch.from_numpy(np.asarray(text_rows))].to(device)
            return self.head(x).squeeze(-1)
        h, m = data.token_batch(np.asarray(text_rows))  # (B, T, D), (B, T)
        h, m = h.to(device), m.to(device)
        neg = torch.finfo(h.dtype).min
        ext = torch.zeros(m.shape, dtype=h.dtype, device=device).masked_fill(~m, neg)
        ext = ext[:, None, None, :]
        for layer in self.layers:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, tuple) else out
        mf = m.unsqueeze(-1).to(h.dtype)
        pooled = (h * mf).sum(1) / mf.sum(1).clamp(min=1.0)  # (B, D)
        return self.head(pooled).squeeze(-1)


def build_reward_model(
    config: RewardConfig, dim: int, encoder: str | None = None, n_top: int = 1
) -> RewardModel:
    """A fresh reward model; ``"top"`` copies the encoder's last ``n_top`` layers (pretrained)."""
    torch.manual_seed(config.seed)
    if config.kind == "head":
        return RewardModel("head", dim, config.hidden)
    if config.kind != "top":
        raise ValueError(f"unknown reward model kind {config.kind!r} (use 'head' or 'top')")
    from models.lm import load_encoder

    enc = load_encoder(encoder, device="cpu")
    base = enc.model.encoder.layer
    layers = nn.ModuleList(copy.deepcopy(base[len(base) - n_top + i]) for i in range(n_top))
    for layer in layers:
        layer.train()
        for mod in layer.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = config.dropout
    model = RewardModel("top", dim, config.hidden, layers)
    return model


def pair_margins(
    model: RewardModel, data: PairData, rows: np.ndarray | None = None, batch_size: int = 128
) -> torch.Tensor:
    """r(chosen) − r(rejected) (P,) on the CPU for ``rows`` (all pairs by default), no gradient,
    eval mode."""
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(rows), batch_size):
            r = rows[s : s + batch_size]
            rc = model(data, data.chosen_idx[r])
            rr = model(data, data.rejected_idx[r])
            out.append(rc - rr)
    model.train(was)
    return torch.cat(out).cpu() if out else torch.zeros(0)


def pair_losses(model: RewardModel, data: PairData, rows: np.ndarray) -> torch.Tensor:
    """Bradley–Terry losses ℓ_i = −log σ(r_c − r_r) (B,) with gradient."""
    rows = np.asarray(rows)
    both = np.concatenate([data.chosen_idx[rows], data.rejected_idx[rows]])
    r = model(data, both)  # one pass over chosen and rejected together
    margin = r[: len(rows)] - r[len(rows) :]
    return F.softplus(-margin)


def accuracy(model: RewardModel, data: PairData, rows: np.ndarray | None = None) -> float:
    """Share of pairs where r(chosen) > r(rejected) (ties count half)."""
    m = pair_margins(model, data, rows)
    if len(m) == 0:
        return float("nan")
    return float(((m > 0).float() + 0.5 * (m == 0).float()).mean())


def make_optimizer(model: RewardModel, config: RewardConfig) -> torch.optim.Optimizer:
    groups = [{"params": list(model.head.parameters()), "lr": config.head_lr}]
    if len(model.layers):
        groups.append({"params": list(model.layers.parameters()), "lr": config.lr})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def fit(
    model: RewardModel,
    data: PairData,
    config: RewardConfig,
    *,
    rows: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
) -> RewardModel:
    """Train ``model`` in place (on its device) on ``rows`` with per-pair ``weights`` (≥ 0;
    default uniform).

    Loss per batch: Σ w_i ℓ_i / (B · mean w over all rows), so the scale of the weights changes
    nothing and a zero weight removes a pair. Returns the model (train mode off).
    """
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(rows):
        raise ValueError("weights must have one entry per row")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    keep = w > 0
    rows, w = rows[keep], w[keep]
    if len(rows) == 0:
        return model.eval()
    w_t = torch.as_tensor(w / w.mean(), dtype=torch.float32, device=model.device)
    opt = make_optimizer(model, config)
    rng = np.random.default_rng(config.seed)
    steps = config.epochs * math.ceil(len(rows) / config.batch_size)
    step = 0
    model.train()
    for _ in range(config.epochs):
        order = rng.permutation(len(rows))
        for s in range(0, len(order), config.batch_size):
            b = order[s : s + config.batch_size]
            loss = (w_t[b] * pair_losses(model, data, rows[b])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if check_cancelled and step % 10 == 0:
                check_cancelled()
            if progress and (step % 20 == 0 or step == steps):
                progress(step / steps, f"reward model step {step}/{steps}")
    return model.eval()
