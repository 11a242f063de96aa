"""A loaded ``CausalLM`` (models/lm.py) running on a LoRC-compressed copy of its model.

``compressed_causal_lm(lm, path)`` applies a saved compression (``models.lorc.save``) to a copy of
``lm``'s model and returns a ``CausalLM`` with the latent cache factory and a model id that names
the compression, so answer caches (``models/prboost/answers.py``) never mix the two models. The
uncompressed ``lm`` stays as it was (``load_causal_lm`` caches it per process).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from models.lm import CausalLM
from models.lorc.compress import load, new_cache

__all__ = ["BASE_MODEL_KEY", "compressed_causal_lm", "load_compressed_causal_lm"]

BASE_MODEL_KEY = "base_model"  # in a saved file's meta: the base model's name ("" = default)

_LOADED: dict[tuple[str, str], CausalLM] = {}
_LOCK = threading.Lock()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def compressed_causal_lm(lm: CausalLM, path: Path | str) -> CausalLM:
    """``lm`` with its model LoRC-compressed by the file at ``path`` (once per process)."""
    path = Path(path)
    key = (lm.model_id, _digest(path))
    with _LOCK:
        if key not in _LOADED:
            model = load(path, lm.model)  # a compressed deep copy
            _LOADED[key] = CausalLM(
                model,
                lm.tokenizer,
                f"{lm.model_id}|lorc:{key[1]}",
                lm.device,
                lm.max_length,
                cache_factory=new_cache,
            )
        return _LOADED[key]


def load_compressed_causal_lm(
    path: Path | str, device: str | None = None, dtype: str | None = None
) -> CausalLM:
    """The base model named in the file's meta (``base_model``), loaded by ``load_causal_lm``
    and compressed by the file."""
    from models.lm import ModelLoadError, load_causal_lm
    from models.lorc.compress import read_header

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"LoRC file not found: {path}")
    base = read_header(path).get("meta", {}).get(BASE_MODEL_KEY) or None
    return compressed_causal_lm(load_causal_lm(base, device=device, dtype=dtype), path)
