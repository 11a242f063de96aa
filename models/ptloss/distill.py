"""Training a student (or the encoder teacher) with one of the distillation losses.

``train`` runs AdamW with linear warm-up and decay over pre-tokenized inputs (``Encoded``): soft
targets ``teacher`` (N, K) for KD and PTLoss, hard targets ``hard`` (N,) for CE and label
smoothing. It reports progress through a callback and calls ``check_cancelled`` every step (the
web worker's raises when the job was cancelled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.progress import Progress, ensure_progress
from models.ptloss.loss import LOSSES, distill_loss, temper
from models.ptloss.students import Encoded


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of steps
    temperature: float = 1.0
    smoothing: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    bucket: int = 8  # batches per length bucket (0: plain shuffling)


def batch_order(lengths: np.ndarray, batch_size: int, bucket: int, rng) -> list[np.ndarray]:
    """Shuffled batches of row indices; with ``bucket`` > 0, rows are sorted by length inside
    chunks of ``bucket`` batches, so a batch pads little (2x fewer tokens on mixed-length text)."""
    order = rng.permutation(len(lengths))
    if bucket > 0:
        chunk = bucket * batch_size
        order = np.concatenate(
            [
                c[np.argsort(lengths[c], kind="stable")]
                for c in np.split(order, range(chunk, len(order), chunk))
            ]
        )
    batches = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train(
    model,
    enc: Encoded,
    *,
    loss: str,
    teacher: np.ndarray | None = None,
    hard: np.ndarray | None = None,
    eps: np.ndarray | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
):
    """Train ``model`` in place on enc (N rows) with ``loss`` (one of LOSSES); returns it in eval
    mode. teacher (N, K) probabilities, hard (N,) ints (default: the teacher's argmax).
    Training runs where the model is (move it to a GPU first); batches follow it there."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    cfg = config or TrainConfig()
    progress = ensure_progress(progress)
    n = len(enc)
    if n == 0:
        raise ValueError("nothing to train on")
    if teacher is None and (loss in ("kd", "ptloss") or hard is None):
        raise ValueError(f"loss {loss!r} needs teacher probabilities")
    device = _device_of(model)
    soft = None
    if teacher is not None:
        soft = torch.as_tensor(np.asarray(teacher), dtype=torch.float32, device=device)  # (N, K)
        if soft.shape[0] != n:
            raise ValueError(f"{soft.shape[0]} teacher rows for {n} examples")
        soft = temper(soft, cfg.temperature)
    if hard is None:
        hard = np.asarray(teacher).argmax(1)
    hard_t = torch.as_tensor(np.asarray(hard), dtype=torch.long, device=device)  # (N,)
    eps_t = None
    if eps is not None:
        eps_t = torch.as_tensor(np.asarray(eps), dtype=torch.float32, device=device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * int(np.ceil(n / cfg.batch_size))
    warm = max(1, int(cfg.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1.0 - s / steps)
    )
    lengths = enc.attention_mask.sum(1).numpy()  # (N,)
    model.train()
    step = 0
    for _ in range(cfg.epochs):
        for idx in batch_order(lengths, cfg.batch_size, cfg.bucket, rng):
            if check_cancelled is not None:
                check_cancelled()
            logits = model(**enc.batch(idx, device)).logits.float()  # (B, K)
            value = distill_loss(
                loss,
                logits,
                teacher=None if soft is None else soft[idx],
                hard=hard_t[idx],
                eps=eps_t,
                temperature=cfg.temperature,
                smoothing=cfg.smoothing,
            )
            opt.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            if step % 10 == 0 or step == steps:
                progress(step / steps, f"{loss}: step {step}/{steps}")
    model.eval()
    return model


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_proba(model, enc: Encoded, batch_size: int = 128) -> np.ndarray:
    """(N, K) class probabilities (computed where the model is)."""
    model.eval()
    device = _device_of(model)
    k = int(model.config.num_labels)
    out = np.zeros((len(enc), k))
    order = np.argsort(enc.attention_mask.sum(1).numpy(), kind="stable")  # little padding
    for lo in range(0, len(enc), batch_size):
        idx = order[lo : lo + batch_size]
        logits = model(**enc.batch(idx, device)).logits.float()
        out[idx] = torch.softmax(logits, -1).cpu().numpy()
    return out


def examples_per_second(model, enc: Encoded, batch_size: int = 32, repeats: int = 1) -> float:
    """Inference throughput on enc (after one warm-up batch), best of ``repeats`` passes."""
    predict_proba(model, enc.subset(np.arange(min(len(enc), batch_size))), batch_size)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_proba(model, enc, batch_size)
        best = max(best, len(enc) / max(1e-9, time.perf_counter() - t0))
    return best
