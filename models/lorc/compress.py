"""Compress a causal LM with LoRC, save/load it, and the references it is tested against.

    covs = calibrate(model, batches)                 # input second moments, a few k tokens
    factors = factorize(model, covs)                 # full-rank whitened factors per layer
    layout = kv_layout(model, QuantSpec(bits=8))
    sched = greedy(layout, factors, budget=0.35 * layout.full_bytes)
    small = compress(model, factors, sched, QuantSpec(bits=8))   # a copy; model is untouched
    small.generate(**inputs)                         # LatentCache made automatically

``compress`` replaces every layer's ``self_attn`` with a ``LoRCAttention`` and makes ``generate``
build a ``LatentCache`` (pass ``cache=new_cache(small)`` to a plain forward). ``save``/``load``
write the truncated factors + schedule (+ spec) as one ``.pt`` file and a JSON sidecar; ``load``
applies them to a freshly loaded base model.
"""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path
from typing import Any

import torch

from models.lorc.attention import LoRCAttention
from models.lorc.cache import LatentCache, QuantKVCache
from models.lorc.factorize import LayerFactors, attention_layers
from models.lorc.quant import QuantSpec
from models.lorc.schedule import KVLayout, Schedule

__all__ = [
    "FORMAT_VERSION",
    "compress",
    "is_compressed",
    "kv_layout",
    "load",
    "new_cache",
    "quant_kv_cache",
    "read_header",
    "replaced_weights",
    "save",
]

FORMAT_VERSION = 1


def kv_layout(
    model: torch.nn.Module, spec: QuantSpec | None = None, storage: torch.dtype | None = None
) -> KVLayout:
    """Geometry of ``model``'s KV cache, the full cache in ``storage`` (default the model's float
    dtype)."""
    cfg = model.config.get_text_config(decoder=True)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    float_bytes = torch.empty(0, dtype=storage or model.dtype).element_size()
    return KVLayout(
        cfg.num_hidden_layers, cfg.num_key_value_heads * head_dim, float_bytes, spec or QuantSpec()
    )


def _check(model: torch.nn.Module, factors: list[LayerFactors], schedule: Schedule) -> None:
    n = len(attention_layers(model))
    if len(factors) != n or schedule.n_layers != n:
        raise ValueError(
            f"model has {n} layers; factors {len(factors)}, schedule {schedule.n_layers}"
        )
    for i, (f, rk, rv) in enumerate(zip(factors, schedule.ranks_k, schedule.ranks_v)):
        if rk > f.k.B.shape[0] or rv > f.v.B.shape[0]:
            raise ValueError(f"layer {i}: ranks ({rk}, {rv}) exceed the factors' ranks")


def compress(
    model: torch.nn.Module,
    factors: list[LayerFactors],
    schedule: Schedule,
    spec: QuantSpec | None = None,
    *,
    storage: torch.dtype | None = None,
    inplace: bool = False,
) -> torch.nn.Module:
    """``model`` (or a copy sharing its weights) with LoRC attention in every layer.

    ``spec``: latent storage (8/4-bit codes, or float); ``storage``: the float dtype of unquantized
    latents (default the model's dtype).
    """
    _check(model, factors, schedule)
    if is_compressed(model):
        raise ValueError("model is already LoRC-compressed")
    spec = spec or QuantSpec()
    target = model if inplace else _sharing_copy(model)
    base = target.model
    for i, layer in enumerate(base.layers):
        f, rk, rv = factors[i], schedule.ranks_k[i], schedule.ranks_v[i]
        A_k, B_k = f.k.truncated(rk)
        A_v, B_v = f.v.truncated(rv)
        layer.self_attn = LoRCAttention(
            layer.self_attn, A_k, B_k, A_v, B_v, base.rotary_emb, spec, storage
        )
    target.lorc = {
        "schedule": schedule,
        "spec": spec,
        "storage": storage,
        "layout": kv_layout(model, spec),
    }
    _patch_generate(target)
    return target


def _sharing_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the module tree (and config) that shares every parameter and buffer with
    ``model``: replacing a submodule of the copy leaves ``model`` as it was, for the memory of
    the new attention weights only."""
    memo = {id(t): t for t in model.parameters()}
    memo.update({id(t): t for t in model.buffers()})
    return copy.deepcopy(model, memo)


def is_compressed(model: torch.nn.Module) -> bool:
    return getattr(model, "lorc", None) is not None


def new_cache(model: torch.nn.Module) -> LatentCache:
    """An empty ``LatentCache`` matching a compressed model's storage."""
    if not is_compressed(model):
        raise ValueError("new_cache needs a LoRC-compressed model (models.lorc.compress)")
    info = model.lorc
    return LatentCache(len(model.model.layers), info["spec"], info["storage"])


def quant_kv_cache(model: torch.nn.Module, spec: QuantSpec) -> QuantKVCache:
    """The baseline cache for an uncompressed model: full K/V, per-token quantized, groups of
    one head."""
    cfg = model.config.get_text_config(decoder=True)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return QuantKVCache(cfg.num_hidden_layers, QuantSpec(spec.bits, head_dim))


def _patch_generate(model: torch.nn.Module) -> None:
    """``generate`` without a ``cache`` argument builds a ``LatentCache`` (instead of the
    ``DynamicCache`` the compressed attention cannot use)."""
    original = model._prepare_cache_for_generation

    def prepare(self, generation_config, model_kwargs, *args, **kwargs):
        if model_kwargs.get("cache") is None and generation_config.use_cache is not False:
            if generation_config.cache_implementation not in (None, "dynamic"):
                raise ValueError(
                    "a LoRC-compressed model uses its own LatentCache: "
                    "leave cache_implementation unset"
                )
            model_kwargs["cache"] = new_cache(self)
        return original(generation_config, model_kwargs, *args, **kwargs)

    model._prepare_cache_for_generation = types.MethodType(prepare, model)
    model.config.use_cache = False  # a bare forward must not build a DynamicCache


def replaced_weights(
    model: torch.nn.Module, factors: list[LayerFactors], schedule: Schedule
) -> torch.nn.Module:
    """A copy of ``model`` whose W_k, W_v are replaced by the low-rank products A·B (the plain
    architecture and cache): what the latent model must reproduce."""
    _check(model, factors, schedule)
    ref = copy.deepcopy(model)
    for attn, f, rk, rv in zip(attention_layers(ref), factors, schedule.ranks_k, schedule.ranks_v):
        for proj, mf, r in ((attn.k_proj, f.k, rk), (attn.v_proj, f.v, rv)):
            A, B = mf.truncated(r)
            W = (A.double() @ B.double()).T  # (o, d)
            proj.weight.data = W.to(proj.weight.dtype).to(proj.weight.device)
    return ref


# --------------------------------------------------------------------------- files
def save(
    path: Path | str,
    factors: list[LayerFactors],
    schedule: Schedule,
    spec: QuantSpec,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the truncated factors (float32) + schedule + spec to ``path`` (.pt) and a readable
    ``path.json`` beside it. Returns ``path``."""
    path = Path(path)
    tensors = {}
    for i, (f, rk, rv) in enumerate(zip(factors, schedule.ranks_k, schedule.ranks_v)):
        A_k, B_k = f.k.truncated(rk)
        A_v, B_v = f.v.truncated(rv)
        tensors[f"{i}.A_k"], tensors[f"{i}.B_k"] = A_k.contiguous(), B_k.contiguous()
        tensors[f"{i}.A_v"], tensors[f"{i}.B_v"] = A_v.contiguous(), B_v.contiguous()
        tensors[f"{i}.sigma_k"], tensors[f"{i}.sigma_v"] = f.k.sigma, f.v.sigma
        tensors[f"{i}.cond"] = torch.tensor([f.k.cond, f.v.cond], dtype=torch.float64)
    header = {
        "format": FORMAT_VERSION,
        "schedule": schedule.to_dict(),
        "spec": {"bits": spec.bits, "group": spec.group},
        "meta": meta or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"header": header, "tensors": tensors}, tmp)
    tmp.replace(path)
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(header, indent=1))
    return path


def load(path: Path | str, model: torch.nn.Module, *, inplace: bool = False) -> torch.nn.Module:
    """Apply a saved compression to ``model`` (the same base model it was built from)."""
    from models.lorc.factorize import MatrixFactors

    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    header, t = blob["header"], blob["tensors"]
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown LoRC file format {header.get('format')!r}")
    schedule = Schedule.from_dict(header["schedule"])
    spec = QuantSpec(header["spec"]["bits"], header["spec"]["group"])
    factors = []
    for i in range(schedule.n_layers):
        cond = t[f"{i}.cond"].tolist()
        factors.append(
            LayerFactors(
                k=MatrixFactors(t[f"{i}.A_k"], t[f"{i}.B_k"], t[f"{i}.sigma_k"], cond[0]),
                v=MatrixFactors(t[f"{i}.A_v"], t[f"{i}.B_v"], t[f"{i}.sigma_v"], cond[1]),
            )
        )
    n = len(attention_layers(model))
    d = attention_layers(model)[0].k_proj.in_features
    if n != schedule.n_layers or factors[0].k.A.shape[0] != d:
        raise ValueError(f"{path} was built for another model ({schedule.n_layers} layers)")
    return compress(model, factors, schedule, spec, inplace=inplace)


def read_header(path: Path | str) -> dict:
    """The JSON header of a saved compression (schedule, spec, meta) without the tensors."""
    side = Path(str(path) + ".json")
    if side.exists():
        return json.loads(side.read_text())
    return torch.load(Path(path), map_location="cpu", weights_only=True)["header"]
