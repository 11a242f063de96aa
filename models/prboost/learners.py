"""Weak learners for PRBoost: a small head on frozen encoder embeddings (default, fast on CPU) and a
fully fine-tuned encoder (for GPU workers).

Both take soft labels: ``y`` is either hard labels (n,) int or a distribution (n, K) whose rows sum
to 1, plus optional per-example weights. ``EmbeddingClassifier`` works on a feature matrix
(``text_features`` / ``relation_features``); ``FineTunedEncoder`` works on the texts themselves.

CPU threads: BLAS inside sklearn/numpy fits runs with one thread (threadpoolctl). Beside torch on
this 2-core machine two BLAS threads were measured ~30x slower than one.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from threadpoolctl import threadpool_limits

from models.progress import Progress, ensure_progress

Embed = Callable[[Sequence[str]], np.ndarray]
"""A function texts -> embeddings (N, D) float32 (default: ``models.lm.embed_texts``)."""


# --------------------------------------------------------------------------- labels
def as_soft_labels(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Hard labels (n,) or soft labels (n, K) -> (n, K) float64 rows summing to 1."""
    y = np.asarray(y)
    if y.ndim == 1:
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"hard labels must lie in 0..{n_classes - 1}")
        out = np.zeros((y.shape[0], n_classes))
        out[np.arange(y.shape[0]), y.astype(np.int64)] = 1.0
        return out
    if y.ndim != 2 or y.shape[1] != n_classes:
        raise ValueError(f"soft labels must have shape (n, {n_classes}), got {y.shape}")
    y = np.asarray(y, dtype=np.float64)
    if np.any(y < 0):
        raise ValueError("soft labels must be non-negative")
    s = y.sum(axis=1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError("every soft label row needs a positive sum")
    return y / s


def _check_weights(sample_weight: np.ndarray | None, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape != (n,):
        raise ValueError(f"sample_weight has {w.shape[0]} entries for {n} examples")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def as_matrix(X):
    """X as float64: a dense array, or a scipy CSR matrix kept sparse (TF-IDF features), since
    the head only needs X @ W and Xᵀ @ G."""
    import scipy.sparse as sp

    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float64)
    return np.asarray(X, dtype=np.float64)


def dense(X) -> np.ndarray:
    import scipy.sparse as sp

    return X.toarray() if sp.issparse(X) else np.asarray(X)


def stack_rows(a, b):
    """Rows of a then b, for dense arrays or sparse matrices (either may be empty)."""
    import scipy.sparse as sp

    if sp.issparse(a) or sp.issparse(b):
        return sp.vstack([sp.csr_matrix(a), sp.csr_matrix(b)], format="csr")
    return np.concatenate([a, b])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- embedding head
@dataclass
class EmbeddingClassifier:
    """A classifier head on frozen features X (n, D): multinomial logistic regression (default) or a
    one-hidden-layer MLP (torch). Soft labels are fitted exactly: for logistic regression each
    example enters once per class with weight w_i·p_ik (the cross-entropy against soft targets).

    ``C`` is the inverse L2 strength (sklearn's convention; for the MLP, weight decay = 1/(C·n)).
    Parameters live in numpy arrays (``state()`` / ``from_state``) so the loop saves them in an npz.
    """

    n_classes: int
    head: Literal["logreg", "mlp"] = "logreg"
    C: float = 1.0
    max_iter: int = 300
    hidden: int = 256
    epochs: int = 200
    lr: float = 3e-3
    seed: int = 0
    params: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError("n_classes must be at least 2")
        if self.head not in ("logreg", "mlp"):
            raise ValueError(f"head must be 'logreg' or 'mlp', got {self.head!r}")
        if not self.C > 0:
            raise ValueError("C must be positive")

    @property
    def fitted(self) -> bool:
        return bool(self.params)

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> EmbeddingClassifier:
        """Fit on X (n, D) with hard (n,) or soft (n, K) labels and optional weights (n,)."""
        X = as_matrix(X)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty (n, D) matrix, got shape {X.shape}")
        Y = as_soft_labels(y, self.n_classes)
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"{Y.shape[0]} labels for {X.shape[0]} examples")
        w = _check_weights(sample_weight, X.shape[0])
        if not w.sum() > 0:
            raise ValueError("sample_weight sums to zero: nothing to fit")
        with threadpool_limits(limits=1):
            if self.head == "logreg":
                self._fit_logreg(X, Y, w)
            else:
                self._fit_mlp(X, Y, w)
        return self

    def _fit_logreg(self, X: np.ndarray, Y: np.ndarray, w: np.ndarray) -> None:
        """Multinomial logistic regression on soft targets, by L-BFGS on the exact objective

            C · Σ_i w_i · CE(Y_i, softmax(X_i W + b)) + ½‖W‖²   (w: mean 1 over rows with w > 0)

        (sklearn's objective; the intercept is not penalized). Soft targets enter directly:
        the gradient is Xᵀ(w ⊙ (P − Y)), so a dense (n, K) target costs no more than a hard one.
        """
        from scipy.optimize import minimize

        n, D = X.shape
        K = self.n_classes
        w = w * (np.count_nonzero(w) / w.sum())  # mean 1 over the rows that count
        present = Y.T @ w > 0  # (K,) classes with any target mass
        if present.sum() == 1:
            coef = np.zeros((K, D))
            intercept = np.where(present, 0.0, -30.0)
            self.params = {"coef": coef, "intercept": intercept}
            return
        C = self.C

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W = theta[: D * K].reshape(D, K)
            b = theta[D * K :]
            Z = X @ W + b  # (n, K)
            Z -= Z.max(axis=1, keepdims=True)
            logP = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
            loss = -C * float(np.sum(w[:, None] * Y * logP)) + 0.5 * float(np.sum(W * W))
            G = C * w[:, None] * (np.exp(logP) - Y)  # (n, K)
            grad_W = X.T @ G + W
            grad_b = G.sum(axis=0)
            return loss, np.concatenate([grad_W.ravel(), grad_b])

        theta0 = np.zeros(D * K + K)
        prior = np.clip(Y.T @ w / n, 1e-6, None)
        theta0[D * K :] = np.log(prior) - np.log(prior).mean()
        res = minimize(
            objective,
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter, "gtol": 1e-5},
        )
        W = res.x[: D * K].reshape(D, K)
        b = res.x[D * K :]
        b = np.where(present, b, -30.0)  # classes never seen get ~zero probability
        self.params = {"coef": np.ascontiguousarray(W.T), "intercept": b}

    def _fit_mlp(self, X: np.ndarray, Y: np.ndarray, w: np.ndarray) -> None:
        import torch

        g = torch.Generator().manual_seed(self.seed)
        D, K, H = X.shape[1], self.n_classes, self.hidden
        W1 = (torch.randn(D, H, generator=g) / np.sqrt(D)).requires_grad_()
        b1 = torch.zeros(H, requires_grad=True)
        W2 = (torch.randn(H, K, generator=g) / np.sqrt(H)).requires_grad_()
        b2 = torch.zeros(K, requires_grad=True)
        Xt = torch.as_tensor(dense(X), dtype=torch.float32)  # (n, D)
        Yt = torch.as_tensor(Y, dtype=torch.float32)  # (n, K)
        wt = torch.as_tensor(w / w.sum(), dtype=torch.float32)  # (n,)
        decay = 1.0 / (self.C * X.shape[0])
        opt = torch.optim.Adam([W1, b1, W2, b2], lr=self.lr)
        for _ in range(self.epochs):
            opt.zero_grad()
            logits = torch.relu(Xt @ W1 + b1) @ W2 + b2  # (n, K)
            loss = -(wt * (Yt * torch.log_softmax(logits, dim=1)).sum(1)).sum()
            loss = loss + decay * ((W1**2).sum() + (W2**2).sum())
            loss.backward()
            opt.step()
        self.params = {
            "W1": W1.detach().numpy().astype(np.float64),
            "b1": b1.detach().numpy().astype(np.float64),
            "W2": W2.detach().numpy().astype(np.float64),
            "b2": b2.detach().numpy().astype(np.float64),
        }

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, K) class probabilities."""
        if not self.fitted:
            raise ValueError("the classifier is not fitted yet")
        X = as_matrix(X)
        p = self.params
        with threadpool_limits(limits=1):
            if "coef" in p:
                logits = X @ p["coef"].T + p["intercept"]
            else:
                logits = np.maximum(X @ p["W1"] + p["b1"], 0.0) @ p["W2"] + p["b2"]
        return _softmax(logits)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    # -- persistence as plain arrays
    def state(self) -> dict[str, np.ndarray]:
        """Config and parameters as a dict of numpy arrays (for ``np.savez``)."""
        cfg = {
            "n_classes": self.n_classes,
            "head": self.head,
            "C": self.C,
            "max_iter": self.max_iter,
            "hidden": self.hidden,
            "epochs": self.epochs,
            "lr": self.lr,
            "seed": self.seed,
        }
        out = {f"cfg_{k}": np.asarray(v) for k, v in cfg.items()}
        out.update({f"param_{k}": v for k, v in self.params.items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> EmbeddingClassifier:
        def cfg(k, cast):
            return cast(np.asarray(state[f"cfg_{k}"]).item())

        clf = cls(
            n_classes=cfg("n_classes", int),
            head=cfg("head", str),
            C=cfg("C", float),
            max_iter=cfg("max_iter", int),
            hidden=cfg("hidden", int),
            epochs=cfg("epochs", int),
            lr=cfg("lr", float),
            seed=cfg("seed", int),
        )
        clf.params = {
            k[len("param_") :]: np.asarray(v) for k, v in state.items() if k.startswith("param_")
        }
        return clf


# --------------------------------------------------------------------------- features
def _default_embed(cache_dir) -> Embed:
    from models.lm import embed_texts

    def embed(texts: Sequence[str]) -> np.ndarray:
        return embed_texts(list(texts), cache_dir=cache_dir)

    return embed


def mark_entities(text: str, head: tuple, tail: tuple) -> str:
    """The text with the two mentions wrapped: ``... [E1] head [/E1] ... [E2] tail [/E2] ...``.

    Spans are (surface, start, end) character offsets; overlapping or out-of-range spans fall back
    to appending the mentions after the text.
    """
    (_, s1, e1), (_, s2, e2) = head, tail
    n = len(text)
    ok = 0 <= s1 <= e1 <= n and 0 <= s2 <= e2 <= n and (e1 <= s2 or e2 <= s1)
    if not ok:
        return f"{text} [E1] {head[0]} [/E1] [E2] {tail[0]} [/E2]"
    marks = sorted([(s1, e1, "[E1]", "[/E1]"), (s2, e2, "[E2]", "[/E2]")], reverse=True)
    out = text
    for s, e, o, c in marks:
        out = f"{out[:s]}{o} {out[s:e]} {c}{out[e:]}"
    return out


def between_text(text: str, head: tuple, tail: tuple) -> str:
    """The words between the two mentions (the strongest relation cue), or ``"[none]"``."""
    (_, s1, e1), (_, s2, e2) = head, tail
    lo, hi = min(e1, e2), max(s1, s2)
    mid = text[lo:hi].strip() if 0 <= lo < hi <= len(text) else ""
    return mid or "[none]"


def relation_features(
    texts: Sequence[str],
    entities: Sequence[tuple],
    embed: Embed | None = None,
    cache_dir=None,
) -> np.ndarray:
    """Entity-aware features for relation extraction, (n, 4·D): embeddings of the marked sentence,
    the head mention, the tail mention and the words between them, concatenated.

    Plain sentence embeddings lose which words are the entities (LR on them reaches ~74% on
    wrench-semeval even with all gold labels); the mention and between-span embeddings restore it.
    """
    if len(texts) != len(entities):
        raise ValueError(f"{len(entities)} entity pairs for {len(texts)} texts")
    embed = embed or _default_embed(cache_dir)
    marked = [mark_entities(t, h, tl) for t, (h, tl) in zip(texts, entities)]
    heads = [h[0] or "[none]" for h, _ in entities]
    tails = [tl[0] or "[none]" for _, tl in entities]
    mids = [between_text(t, h, tl) for t, (h, tl) in zip(texts, entities)]
    parts = [np.asarray(embed(p), dtype=np.float32) for p in (marked, heads, tails, mids)]
    return np.concatenate(parts, axis=1)


def text_features(dataset, embed: Embed | None = None, cache_dir=None) -> np.ndarray:
    """Features for a ``TextDataset``: sentence embeddings (n, D), or ``relation_features`` (n, 4·D)
    for relation extraction."""
    embed = embed or _default_embed(cache_dir)
    if dataset.task_type == "relation_extraction":
        return relation_features(dataset.texts, dataset.entities, embed=embed)
    return np.asarray(embed(dataset.texts), dtype=np.float32)


class TfidfFeatures:
    """TF-IDF word uni/bigram features (sparse float32, L2-normalized rows), vocabulary fitted on
    unlabeled texts (pool + dev): a language-independent end model where no encoder fits the
    language. Relation sets use the entity-marked text (``mark_entities``)."""

    def __init__(self, max_features: int = 3000, min_df: int = 2) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            max_features=max_features,
            min_df=min_df,
            ngram_range=(1, 2),
            sublinear_tf=True,
            dtype=np.float32,
        )

    @staticmethod
    def _texts(dataset) -> list[str]:
        if dataset.task_type == "relation_extraction" and dataset.entities is not None:
            return [mark_entities(t, h, tl) for t, (h, tl) in zip(dataset.texts, dataset.entities)]
        return list(dataset.texts)

    def fit(self, *datasets) -> TfidfFeatures:
        texts = [t for d in datasets for t in self._texts(d)]
        self.vectorizer.fit(texts)
        return self

    def transform(self, dataset):
        """(n, V) float32 features of a ``TextDataset``, as a sparse CSR matrix."""
        return self.vectorizer.transform(self._texts(dataset)).astype(np.float32).tocsr()


def cv_accuracy(
    X: np.ndarray, y: np.ndarray, make_model: Callable[[], object], folds: int = 5, seed: int = 0
) -> float:
    """Stratified ``folds``-fold cross-validated accuracy of ``make_model()`` on (X, y): how an end
    model is chosen inside the dev set, never on test."""
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(y.size, dtype=np.int64)
    offset = 0
    for k in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == k))
        fold_of[rows] = (np.arange(rows.size) + offset) % folds
        offset += rows.size
    correct = 0
    for f in range(folds):
        test = fold_of == f
        if not test.any() or test.all():
            continue
        model = make_model().fit(X[~test], y[~test])
        correct += int(np.sum(model.predict(X[test]) == y[test]))
    return correct / max(y.size, 1)


# --------------------------------------------------------------------------- fine-tuning
@dataclass
class FineTunedEncoder:
    """Full fine-tuning of a transformer encoder (mean pooling + linear head) on soft labels.

    Meant for GPU workers; it also runs on CPU (slowly) for tests with a tiny model. Inputs are the
    texts themselves (entity-marked texts for relation extraction: see ``mark_entities``).
    """

    n_classes: int
    model_name: str | None = None  # hub name or folder; default all-MiniLM-L6-v2
    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-5
    max_length: int = 128
    weight_decay: float = 0.01
    device: str | None = None
    seed: int = 0
    _model: object = field(default=None, repr=False)
    _tokenizer: object = field(default=None, repr=False)
    _head: object = field(default=None, repr=False)

    def _build(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from models.lm import default_encoder, resolve_device

        self.device = resolve_device(self.device)
        name = self.model_name or default_encoder()
        torch.manual_seed(self.seed)
        self._tokenizer = AutoTokenizer.from_pretrained(name)
        self._model = AutoModel.from_pretrained(name).to(self.device)
        hidden = int(self._model.config.hidden_size)
        self._head = torch.nn.Linear(hidden, self.n_classes).to(self.device)

    def _encode(self, texts: Sequence[str]):
        import torch

        enc = self._tokenizer(
            list(texts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
        ).to(self.device)
        hidden = self._model(**enc).last_hidden_state  # (B, T, H)
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, H)
        return self._head(torch.nn.functional.dropout(pooled, 0.1, self._model.training))

    def fit(
        self,
        texts: Sequence[str],
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        progress: Progress | None = None,
    ) -> FineTunedEncoder:
        """Fine-tune on texts with hard (n,) or soft (n, K) labels and optional weights (n,)."""
        import torch

        progress = ensure_progress(progress)
        texts = list(texts)
        if not texts:
            raise ValueError("nothing to fit: no texts")
        Y = as_soft_labels(y, self.n_classes)
        if Y.shape[0] != len(texts):
            raise ValueError(f"{Y.shape[0]} labels for {len(texts)} texts")
        w = _check_weights(sample_weight, len(texts))
        w = w / w.mean()
        self._build()
        params = list(self._model.parameters()) + list(self._head.parameters())
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng(self.seed)
        steps = self.epochs * int(np.ceil(len(texts) / self.batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps)
        )
        Yt = torch.as_tensor(Y, dtype=torch.float32)
        wt = torch.as_tensor(w, dtype=torch.float32)
        self._model.train()
        step = 0
        for _ in range(self.epochs):
            order = rng.permutation(len(texts))
            for lo in range(0, len(texts), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                logits = self._encode([texts[i] for i in idx])  # (B, K)
                logp = torch.log_softmax(logits.float(), dim=1)
                yb, wb = Yt[idx].to(self.device), wt[idx].to(self.device)
                loss = -(wb * (yb * logp).sum(1)).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                step += 1
                progress(step / steps, f"fine-tuning step {step}/{steps}")
        self._model.eval()
        return self

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        if self._model is None:
            raise ValueError("the encoder is not fine-tuned yet")
        texts = list(texts)
        out = np.zeros((len(texts), self.n_classes))
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                logits = self._encode(texts[lo : lo + batch_size]).float()
                out[lo : lo + batch_size] = torch.softmax(logits, dim=1).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts).argmax(axis=1)

    def state_bytes(self) -> bytes:
        """Weights of encoder and head as one torch-serialized blob (for the loop's folder)."""
        import torch

        if self._model is None:
            raise ValueError("the encoder is not fine-tuned yet")
        buf = io.BytesIO()
        torch.save({"model": self._model.state_dict(), "head": self._head.state_dict()}, buf)
        return buf.getvalue()

    def load_state_bytes(self, blob: bytes) -> FineTunedEncoder:
        import torch

        self._build()
        state = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
        self._model.load_state_dict(state["model"])
        self._head.load_state_dict(state["head"])
        self._model.eval()
        return self
