"""LoRC: low-rank KV-cache compression of Llama-style causal LMs, without retraining.

Keys and values are projected to low-rank latents (whitened SVD of W_k, W_v on a small calibration
set); the cache stores the latents (optionally 8-/4-bit), keys are rebuilt before the rotary
embedding, value factors are folded into the output projection. See ``compress`` for the recipe.
"""

from models.lorc.attention import LoRCAttention
from models.lorc.cache import LatentCache, QuantKVCache, cache_nbytes
from models.lorc.compress import (
    compress,
    is_compressed,
    kv_layout,
    load,
    new_cache,
    quant_kv_cache,
    read_header,
    replaced_weights,
    save,
)
from models.lorc.evaluate import perplexity, token_windows, topk_agreement
from models.lorc.factorize import LayerFactors, MatrixFactors, calibrate, factorize
from models.lorc.quant import QuantSpec, dequantize, fake_quant, quantize
from models.lorc.schedule import (
    BudgetError,
    KVLayout,
    Schedule,
    fit_to_perplexity,
    full_schedule,
    greedy,
    progressive,
    uniform,
)

__all__ = [
    "BudgetError",
    "KVLayout",
    "LatentCache",
    "LayerFactors",
    "LoRCAttention",
    "MatrixFactors",
    "QuantKVCache",
    "QuantSpec",
    "Schedule",
    "cache_nbytes",
    "calibrate",
    "compress",
    "dequantize",
    "factorize",
    "fake_quant",
    "fit_to_perplexity",
    "full_schedule",
    "greedy",
    "is_compressed",
    "kv_layout",
    "load",
    "new_cache",
    "perplexity",
    "progressive",
    "quant_kv_cache",
    "quantize",
    "read_header",
    "replaced_weights",
    "save",
    "token_windows",
    "topk_agreement",
    "uniform",
]
