"""LoRC on SmolLM2-135M-Instruct: perplexity vs KV bytes, answer agreement, memory and speed.

    python -m bench lorc [--data DIR] [--device cpu|cuda] [--dtype bfloat16] [--eval-tokens 1024]
                         [--speed-contexts 512,2048,8192] [--decode-steps 8] [--skip-speed]
                         [--speed-only] [--render-only]
                         [--budgets float:0.75,0.5;int8:0.45,0.4;int4:0.3,0.25]

One run, one model, one machine:
1. calibration: the input second moment of every attention layer from ~2.3k tokens of the
   *calibration halves* (HH-RLHF dialogues: first half of the file; TREC: train; SMS: even rows);
   whitened factors (and plain SVD for the ablation).
2. default: greedy ranks, for each candidate latent storage (4-bit codes in groups of 16, 8-bit
   codes in groups of 64 or 32) the smallest budget whose perplexity on held-out *calibration*
   windows stays within +4% of the full model's (``fit_to_perplexity``); the candidate with the
   fewest bytes per token is the default. Nothing is chosen on evaluation text. Its ablations run
   beside it: the same ranks with bf16 latents (low rank alone), every channel with the same
   codes (quantization of the latents alone), and plain 4-bit K/V in groups of 16 (quantization
   alone).
3. quality: perplexity on the *evaluation halves* (HH-RLHF second half, TREC test, SMS odd rows),
   --eval-tokens per source in 512-token windows, every window fed as 64 tokens then the rest, so
   the second call reads the first from the cache: full cache; plain per-token 8-/4-bit K/V; the
   transformers ``QuantizedCache`` (fp8 backend, no extra package); plain 4-bit K/V in groups of
   16; LoRC uniform / progressive /
   greedy ranks at several budgets, float / int8 / int4 latents; plain SVD (ablation).
   KV bytes per token are measured from the cache tensors after the window (``cache_nbytes``).
4. answers: top-10 answer words of the PRBoost proposer (default text-classification templates,
   wrench-trec dev texts) of each LoRC model vs the full model: top-1 agreement, top-10 overlap.
5. speed and memory: chunked prefill (512) to each context, then --decode-steps greedy steps;
   decode tokens/s, peak memory above the loaded model (CPU: VmHWM; CUDA: max allocated) and the
   cache's bytes. CPU scale-down (said in the results): batch 16 only at 512 tokens, the longest
   context for the full cache and the default only, few steps.

JSON goes to bench/results/lorc.json; bench/RESULTS-lorc.md and bench/RESULTS-lorc.png are rendered
from it (``--render-only`` re-renders).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._report import machine, markdown_table

ROOT = Path(__file__).resolve().parent
JSON_PATH = ROOT / "results" / "lorc.json"
SPEED_JSON_PATH = ROOT / "results" / "lorc-speed.json"
MD_PATH = ROOT / "RESULTS-lorc.md"
PNG_PATH = ROOT / "RESULTS-lorc.png"
WINDOW = 512
PREFILL = 64
CEILING = 1.04  # default schedule: calibration perplexity within +4% of the full model
DEFAULT_NAME = "lorc-default (greedy-{label}, fitted)"
DEFAULT_JSON_PATH = ROOT / "results" / "lorc-default.json"


# --------------------------------------------------------------------------- memory probes
def _rss_reset() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak memory (MiB) above the level at entry: CUDA max allocated, else VmHWM - VmRSS."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> PeakMemory:
        import gc

        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with contextlib.suppress(OSError, AttributeError):  # hand freed heap back to the OS
                import ctypes

                ctypes.CDLL("libc.so.6").malloc_trim(0)
            _rss_reset()
            self.base = _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _status_kb("VmHWM") * 1024
        self.mib = max(peak - self.base, 0) / 2**20


# --------------------------------------------------------------------------- configs
STORAGE = None  # --cache-dtype: the float dtype caches keep (None: the model's)


def _layout(model, spec):
    from models.lorc import kv_layout

    return kv_layout(model, spec, STORAGE)


def _compress(model, factors, sched, spec):
    """A LoRC copy whose float latents are kept in ``STORAGE``."""
    from models.lorc import compress

    return compress(model, factors, sched, spec, storage=STORAGE)


def _full_cache(model):
    """The uncompressed cache: the model's own ``DynamicCache``, or its K/V kept in ``STORAGE``
    (a bf16 cache for a model that computes in float32 on a CPU without bf16 arithmetic)."""
    from transformers import DynamicCache

    from models.lorc import QuantKVCache, QuantSpec

    if STORAGE is None or model.dtype == STORAGE:
        return DynamicCache(config=model.config)
    return QuantKVCache(len(model.model.layers), QuantSpec(None), storage=STORAGE)


def _full_label(model) -> str:
    import torch

    dtype = STORAGE or model.dtype
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def _budgets(text: str) -> list[tuple[int | None, list[float]]]:
    """``float:0.75,0.5;int8:0.45,0.4`` -> [(None, [0.75, 0.5]), (8, [0.45, 0.4])]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        storage, ratios = part.split(":")
        bits = None if storage == "float" else int(storage.removeprefix("int"))
        out.append((bits, [float(r) for r in ratios.split(",")]))
    return out


def _label(spec) -> str:
    """Storage label: float, int8, int4, or int4g16 when the groups are not the default 32."""
    return spec.label + (f"g{spec.group}" if spec.bits and spec.group != 32 else "")


def _configs(lm, factors, plain, fitted, default_spec, budgets):
    """(name, family, quant, model, cache factory, layout info) for every compared setting."""

    from models.lorc import (
        QuantSpec,
        Schedule,
        full_schedule,
        greedy,
        new_cache,
        progressive,
        uniform,
    )

    model = lm.model
    out = _baseline_configs(model)
    makers = {
        "uniform": lambda L, b: uniform(L, b),
        "progressive": lambda L, b: progressive(L, factors, b),
        "greedy": lambda L, b: greedy(L, factors, b),
    }
    for bits, ratios in budgets:
        spec = QuantSpec(bits)
        layout = _layout(model, spec)
        for ratio in ratios:
            for method, make in makers.items():
                sched = make(layout, ratio * layout.full_bytes)
                small = _compress(model, factors, sched, spec)
                out.append(
                    (f"lorc-{method}-{spec.label}@{ratio:g}", f"lorc-{method}", spec.label, small,
                     (lambda m: lambda: new_cache(m))(small))
                )  # fmt: skip
    spec = QuantSpec(None)
    layout = _layout(model, spec)
    sched = greedy(layout, plain, 0.75 * layout.full_bytes)
    plain_model = _compress(model, plain, sched, spec)
    out.append(("plainsvd-greedy-float@0.75", "plain-svd", "float", plain_model,
                lambda: new_cache(plain_model)))  # fmt: skip
    label = _label(default_spec)
    # ablations of the default: its ranks with float latents (low rank alone), every channel with
    # its codes (quantization of the whitened latents alone)
    low = _compress(model, factors, Schedule(fitted.ranks_k, fitted.ranks_v, "greedy"), spec)
    out.append(("lorc-default-ranks-float (low rank alone)", "lorc-ablation", "float", low,
                lambda: new_cache(low)))  # fmt: skip
    whole = _compress(model, factors, full_schedule(_layout(model, default_spec)), default_spec)
    out.append((f"lorc-full-rank-{label} (latent codes alone)", "lorc-ablation", label, whole,
                lambda: new_cache(whole)))  # fmt: skip
    default_model = _compress(model, factors, fitted, default_spec)
    out.append((DEFAULT_NAME.format(label=label), "lorc-default", label, default_model,
                lambda: new_cache(default_model)))  # fmt: skip
    return out


# --------------------------------------------------------------------------- sections
def quality(name, model, factory, windows) -> dict:
    from models.lorc import cache_nbytes, perplexity

    holder = {}

    def recording():
        holder["cache"] = factory()
        return holder["cache"]

    t0 = time.perf_counter()
    ppl = {s: perplexity(model, w, 1, recording, prefill=PREFILL) for s, w in windows.items()}
    tokens = windows[next(iter(windows))][-1:].numel()  # the cache holds the last window
    bpt = cache_nbytes(holder["cache"]) / tokens
    return {"ppl": ppl, "bytes_per_token": bpt, "seconds": time.perf_counter() - t0}


def answers(lm, model, texts, templates, ref=None) -> dict:
    from models.lm import CausalLM
    from models.lorc import is_compressed, new_cache, topk_agreement
    from models.prboost.answers import compute_answer_index

    clm = lm
    if model is not lm.model:
        clm = CausalLM(
            model,
            lm.tokenizer,
            f"{lm.model_id}|lorc:{id(model)}",
            lm.device,
            cache_factory=new_cache if is_compressed(model) else None,
        )
    index = compute_answer_index(clm, texts, templates, k=10, use_cache=False)
    ids = {t.id: index.topk_ids(t.id) for t in templates}
    if ref is None:
        return {"ids": ids}
    agree = [topk_agreement(ref["ids"][t.id], ids[t.id]) for t in templates]
    return {
        "top1": sum(a["top1"] for a in agree) / len(agree),
        "overlap": sum(a["overlap"] for a in agree) / len(agree),
    }


def speed(model, factory, vocab_ids, batch: int, context: int, steps: int, device: str) -> dict:
    import torch

    from models.lorc import cache_nbytes

    g = torch.Generator().manual_seed(0)
    ids = vocab_ids[torch.randint(0, len(vocab_ids), (batch, context), generator=g)].to(device)
    with PeakMemory(device) as mem, torch.inference_mode():
        cache = factory()
        t0 = time.perf_counter()
        for s in range(0, context, WINDOW):
            out = model(input_ids=ids[:, s : s + WINDOW], cache=cache, use_cache=True,
                        logits_to_keep=1)  # fmt: skip
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        prefill_s = time.perf_counter() - t0
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        out = model(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1)  # warm-up step
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        t1 = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        nbytes = cache_nbytes(cache)
        del cache, out
    return {
        "batch": batch,
        "context": context,
        "prefill_tok_s": batch * context / prefill_s,
        "decode_tok_s": batch * steps / (t2 - t1),
        "peak_mib": mem.mib,
        "cache_mib": nbytes / 2**20,
    }


# --------------------------------------------------------------------------- run
def _speed_section(args, configs, default_spec, windows, device, log, t_start, load_start,
                   default=None, plan=None, rows=None) -> dict:  # fmt: skip
    """--speed-part baselines|lorc: the speed rows of the baselines (no calibration needed) or of
    the LoRC default and float setting, each row written to results/lorc-speed-part-<part>.json as
    soon as it is measured (so parts can run in parallel and a slow machine keeps what it did)."""
    vocab_ids = windows["hh-rlhf"].reshape(-1).unique()
    by_name = {c[0]: c for c in configs}
    longest = max(args.contexts)
    shorter = [(1, c) for c in args.contexts if c < longest]
    b16 = [(16, args.batch16_context)] if args.batch16_context else []
    if plan is not None:
        pass
    elif default_spec is None:
        plan = [
            ("full", [(1, c) for c in args.contexts] + b16),
            ("kv-int8", shorter + b16),
            ("hf-fp8", [s for s in shorter if s[1] <= 2048]),
        ]
    else:
        plan = [
            (
                DEFAULT_NAME.format(label=_label(default_spec)),
                [(1, c) for c in args.contexts] + b16,
            ),
            ("lorc-greedy-float@0.75", [s for s in shorter if s[1] <= 2048]),
        ]
    out = JSON_PATH.with_name(f"lorc-speed-part-{args.speed_part}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    res = {
        "date": "",
        "machine": machine(),
        "speed": list(rows or []),
        "default": default,
        "part": args.speed_part,
        "decode_steps": args.decode_steps,
        "speed_contexts": args.speed_contexts,
    }
    for name, shapes in plan:
        if name not in by_name:
            continue
        _, _, _, m, factory = by_name[name]
        for batch, context in shapes:
            r = speed(m, factory, vocab_ids, batch, context, args.decode_steps, device)
            r["name"] = name
            res["speed"].append(r)
            log("speed", r)
            res["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            res["seconds"] = time.perf_counter() - t_start
            res["load"] = [load_start, os.getloadavg()[0]]
            out.write_text(json.dumps(res, indent=1))
    return res


def _baseline_configs(model):
    from transformers import QuantizedCache

    from models.lorc import QuantKVCache, QuantSpec, quant_kv_cache

    return [
        ("full", "full", _full_label(model), model,
         lambda: _full_cache(model)),
        ("kv-int8", "kv-quant", "int8", model, lambda: quant_kv_cache(model, QuantSpec(8))),
        ("kv-int4", "kv-quant", "int4", model, lambda: quant_kv_cache(model, QuantSpec(4))),
        ("hf-fp8", "hf-quantized", "fp8", model,
         lambda: QuantizedCache(backend="fp8", config=model.config)),
        ("kv-int4g16", "kv-quant", "int4g16", model,
         lambda: QuantKVCache(len(model.model.layers), QuantSpec(4, group=16))),
    ]  # fmt: skip


def _wants_answers(family: str, args) -> bool:
    lorc = family.startswith("lorc") or family == "plain-svd"
    return lorc and (family == "lorc-default" or "greedy" in family or args.all_answers)


def _fit_default(model, factors, cal_dev, full_dev, args, log):
    """For each candidate latent storage, the smallest greedy budget whose perplexity on held-out
    calibration text stays within ``CEILING`` × the full model's; the fewest bytes win."""
    from models.lorc import (
        BudgetError,
        QuantSpec,
        fit_to_perplexity,
        full_schedule,
        greedy,
        new_cache,
        perplexity,
    )

    candidates = []  # one fit per latent storage, all on held-out calibration text
    # smallest storage first: a later fit starts at the bytes to beat (only a smaller fit can
    # win), which saves calibration passes and changes nothing in the choice. 8-bit codes in
    # groups of 64 (one scale per head width, as the per-head int8 K/V baseline) or 32.
    for spec in (QuantSpec(4, group=16), QuantSpec(8, group=64), QuantSpec(8)):
        layout = _layout(model, spec)
        hi = layout.bytes_per_token(full_schedule(layout))  # every channel kept
        if candidates:
            hi = min(hi, min(c[0] for c in candidates))

        def dev_ppl(s, spec=spec):
            small = _compress(model, factors, s, spec)
            return perplexity(small, cal_dev, 1, lambda: new_cache(small), prefill=PREFILL)

        try:
            sched, ppl, tried = fit_to_perplexity(
                lambda b, layout=layout: greedy(layout, factors, b),
                dev_ppl,
                CEILING * full_dev,
                0.15 * layout.full_bytes,
                hi,
                steps=args.fit_steps,
            )
        except BudgetError as exc:
            log("no fit for", _label(spec), exc)
            continue
        bpt = layout.bytes_per_token(sched)
        candidates.append((bpt, spec, sched, ppl, tried))
        log("fitted", _label(spec), bpt, "B/token, calibration ppl", round(ppl, 3))
    if not candidates:
        raise SystemExit("no latent storage keeps calibration perplexity within the ceiling")
    _, default_spec, fitted, fitted_ppl, tried = min(candidates, key=lambda c: c[0])
    return default_spec, fitted, fitted_ppl, tried, candidates


def _read_default(path: Path, log):
    """The default written by a run that fitted it (``DEFAULT_JSON_PATH``), waited for."""
    from models.lorc import QuantSpec, Schedule

    while not path.exists():
        time.sleep(10)
    d = json.loads(path.read_text())
    cands = [(c[0], QuantSpec(*c[1]), None, c[2], c[3]) for c in d["candidates"]]
    log("default read from", path)
    return QuantSpec(*d["storage"]), Schedule.from_dict(d["schedule"]), d["ppl"], d["tried"], cands


def run(args) -> dict:
    import torch

    from bench._lorc_texts import load_texts
    from models.data import load_wrench
    from models.lm import load_causal_lm
    from models.lorc import (
        QuantSpec,
        calibrate,
        factorize,
        perplexity,
        token_windows,
    )
    from models.prboost.templates import DEFAULT_TEMPLATES

    global STORAGE
    STORAGE = getattr(torch, args.cache_dtype) if args.cache_dtype else None
    torch.set_num_threads(args.threads)
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    lm = load_causal_lm(device=args.device, dtype=args.dtype)
    model, tok, device = lm.model, lm.tokenizer, lm.device
    texts = load_texts(args.data)
    log = lambda *a: print(f"[{time.perf_counter() - t_start:6.0f}s]", *a, flush=True)  # noqa: E731
    log("loaded", lm.model_id)
    if args.speed_part == "baselines":  # full / kv-int8 / fp8 rows need no calibration
        windows = {"hh-rlhf": token_windows(tok, texts["hh-rlhf"]["eval"], WINDOW, 1024)}
        configs = _baseline_configs(model)
        return _speed_section(args, configs, None, windows, device, log, t_start, load_start)

    cal, cal_dev = [], []
    for src in texts:
        w = token_windows(tok, texts[src]["calib"], 256, args.calib_tokens + 2 * WINDOW)
        cal.append(w[: args.calib_tokens // 256])
        rest = w[args.calib_tokens // 256 :].reshape(-1)[: 2 * WINDOW]
        cal_dev.append(rest.view(-1, WINDOW)[:1])  # held-out calibration text for the default
    cal, cal_dev = torch.cat(cal), torch.cat(cal_dev)
    windows = {s: token_windows(tok, texts[s]["eval"], WINDOW, args.eval_tokens) for s in texts}
    batches = [(cal[i : i + 3], torch.ones_like(cal[i : i + 3])) for i in range(0, len(cal), 3)]
    covs = calibrate(model, batches)
    factors, plain = factorize(model, covs), factorize(model, None)
    log("factorized", int(cal.numel()), "calibration tokens")
    early = []
    if args.speed_part == "lorc":  # a fixed-budget row first: it needs no fitted default
        from models.lorc import greedy, new_cache

        lay = _layout(model, QuantSpec(8))
        fixed = _compress(model, factors, greedy(lay, factors, 0.4 * lay.full_bytes),
                              QuantSpec(8))  # fmt: skip
        name = "lorc-greedy-int8@0.4"
        pre = [(name, "lorc-greedy", "int8", fixed, lambda: new_cache(fixed))]
        longest = [(1, max(args.contexts))]
        early = _speed_section(args, pre, None, windows, device, log, t_start, load_start,
                               plan=[(name, longest)])["speed"]  # fmt: skip

    layout8 = _layout(model, QuantSpec(8))
    # the full model's calibration perplexity (the ceiling's base): needed to fit, and reported by
    # the run (or part, --families with "full") that renders the header
    with_full = not args.default_json or (args.families and "full" in args.families)
    full_dev = perplexity(model, cal_dev) if with_full else None
    if args.default_json:  # the default another run fitted (same code, data and calibration)
        default_spec, fitted, fitted_ppl, tried, candidates = _read_default(args.default_json, log)
    else:
        default_spec, fitted, fitted_ppl, tried, candidates = _fit_default(
            model, factors, cal_dev, full_dev, args, log
        )
        DEFAULT_JSON_PATH.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_JSON_PATH.write_text(
            json.dumps(
                {
                    "storage": [default_spec.bits, default_spec.group],
                    "schedule": fitted.to_dict(),
                    "ppl": fitted_ppl,
                    "tried": tried,
                    "candidates": [[c[0], [c[1].bits, c[1].group], c[3], c[4]] for c in candidates],
                }
            )
        )
    log("default", _label(default_spec), fitted.ranks_k, fitted.ranks_v)

    budgets = _budgets(args.budgets)
    if args.quick:  # a smoke run of every code path, numbers meaningless
        budgets = [(8, [0.4])]
    if args.speed_only:  # the settings the speed section runs
        budgets = [(None, [0.75])]
    configs = _configs(lm, factors, plain, fitted, default_spec, budgets)
    trec, _ = load_wrench(args.data / "wrench-trec", "valid")
    qtexts = list(trec.texts[: args.answer_texts])
    templates = DEFAULT_TEMPLATES["text_classification"]
    if args.families:  # this process measures only these settings (a part of a parallel run)
        configs_q = [c for c in configs if c[1] in args.families]
    else:
        configs_q = [] if args.speed_only else configs
    need_answers = any(_wants_answers(c[1], args) for c in configs_q)
    ref_answers = answers(lm, model, qtexts, templates) if need_answers else None
    rows = []
    for name, family, quant, m, factory in configs_q:
        row = {"name": name, "family": family, "quant": quant}
        row.update(quality(name, m, factory, windows))
        if _wants_answers(family, args):
            row["answers"] = answers(lm, m, qtexts, templates, ref_answers)
        if hasattr(m, "lorc"):
            s = m.lorc["schedule"]
            row["ranks_k"], row["ranks_v"] = s.ranks_k, s.ranks_v
        rows.append(row)
        log(name, {k: v for k, v in row.items() if k not in ("ranks_k", "ranks_v")})

    speed_rows = []
    if args.speed_part == "lorc":
        bpt = _layout(model, default_spec).bytes_per_token(fitted)
        return _speed_section(
            args, configs, default_spec, windows, device, log, t_start, load_start,
            {"bytes_per_token": bpt}, rows=early,
        )  # fmt: skip
    if not args.skip_speed:
        vocab_ids = windows["hh-rlhf"].reshape(-1).unique()
        by_name = {c[0]: c for c in configs}
        default_name = DEFAULT_NAME.format(label=_label(default_spec))
        longest = max(args.contexts)
        shorter = [(1, c) for c in args.contexts if c < longest]
        b16 = [(16, args.batch16_context)] if args.batch16_context else []
        plan = [
            ("full", [(1, c) for c in args.contexts] + b16),
            (default_name, [(1, c) for c in args.contexts] + b16),
            ("kv-int8", shorter + b16),
            ("hf-fp8", [s for s in shorter if s[1] <= 2048]),
            ("lorc-greedy-float@0.75", [s for s in shorter if s[1] <= 2048]),
        ]
        for name, shapes in plan:
            if name not in by_name:  # --quick runs fewer settings
                continue
            _, _, _, m, factory = by_name[name]
            for batch, context in shapes:
                r = speed(m, factory, vocab_ids, batch, context, args.decode_steps, device)
                r["name"] = name
                speed_rows.append(r)
                log("speed", r)

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "device": device,
        "dtype": str(model.dtype).removeprefix("torch."),
        "threads": args.threads,
        "options": {
            k: getattr(args, k)
            for k in (
                "calib_tokens",
                "eval_tokens",
                "fit_steps",
                "answer_texts",
                "budgets",
                "speed_contexts",
                "decode_steps",
                "cache_dtype",
            )
        },  # fmt: skip
        "load": [load_start, os.getloadavg()[0]],
        "model": lm.model_id,
        "layout": {
            "n_layers": layout8.n_layers,
            "kv_dim": layout8.kv_dim,
            "full_bytes_per_token": layout8.full_bytes,
        },
        "calibration_tokens": int(cal.numel()),
        "calibration_dev_tokens": int(cal_dev.numel()),
        "eval_tokens_per_source": {s: int(w.numel()) for s, w in windows.items()},
        "full_calibration_dev_ppl": full_dev,
        "default": {
            "ceiling": CEILING,
            "storage": _label(default_spec),
            "bytes_per_token": _layout(model, default_spec).bytes_per_token(fitted),
            "calibration_dev_ppl": fitted_ppl,
            "tried": tried,
            "ranks_k": fitted.ranks_k,
            "ranks_v": fitted.ranks_v,
            "candidates": [
                {
                    "storage": _label(c[1]),
                    "bytes_per_token": c[0],
                    "calibration_dev_ppl": c[3],
                    "tried": c[4],
                }
                for c in candidates
            ],  # fmt: skip
        },
        "answer_texts": len(qtexts),
        "templates": [t.id for t in templates],
        "decode_steps": args.decode_steps,
        "quality": rows,
        "speed": speed_rows,
        "seconds": time.perf_counter() - t_start,
    }


# --------------------------------------------------------------------------- rendering
def _increase(row: dict, full: dict) -> float:
    """Mean relative perplexity increase over the sources, in percent."""
    inc = [row["ppl"][s] / full["ppl"][s] - 1 for s in full["ppl"]]
    return 100 * sum(inc) / len(inc)


def _saved(row: dict, full: dict) -> float:
    return 100 * (1 - row["bytes_per_token"] / full["bytes_per_token"])


def _quant_frontier(q: list[dict], full: dict, saved: float) -> float | None:
    """Δppl of quantization alone at ``saved`` (linear between its points), None outside them."""
    pts = sorted(
        (_saved(r, full), _increase(r, full))
        for r in q
        if r["family"] in ("kv-quant", "hf-quantized", "full")
    )
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= saved <= x1 and x1 > x0:
            return y0 + (y1 - y0) * (saved - x0) / (x1 - x0)
    return None


def _default_name(res: dict) -> str:
    return DEFAULT_NAME.format(label=res["default"].get("storage", "int8"))


def targets(res: dict) -> list[list[str]]:
    """The issue's targets, judged from the rows (nothing typed)."""
    q = res["quality"]
    full = next(r for r in q if r["family"] == "full")
    lorc = [r for r in q if r["family"].startswith("lorc")]
    default = next(r for r in q if r["family"] == "lorc-default")
    ok = [r for r in lorc if _increase(r, full) <= 5.0]
    best = max(ok, key=lambda r: _saved(r, full), default=None)
    d_saved, d_inc = _saved(default, full), _increase(default, full)
    measured = f"the default (chosen on calibration text): {d_saved:.1f}% saved at {d_inc:+.1f}%"
    if best and best is not default:  # said, not judged: picking it would use the evaluation text
        measured += (
            f"; most saved by any row within +5% on the evaluation text: {best['name']}, "
            f"{_saved(best, full):.1f}% at {_increase(best, full):+.1f}%"
        )
    rows = [
        [
            "≥ 60% KV bytes saved at ≤ 5% perplexity increase",
            measured,
            "yes" if d_saved >= 60 and d_inc <= 5.0 else "no",
        ]
    ]
    below = []
    for r in lorc:
        s = _saved(r, full)
        ref = _quant_frontier(q, full, s)
        if 50 <= s <= 85 and ref is not None and _increase(r, full) < ref:
            below.append(f"{r['name']} ({s:.1f}% saved: {_increase(r, full):+.1f}% vs {ref:+.1f}%)")
    rows.append(
        [
            "low-rank + quantized frontier below quantization alone in 50–85% saved",
            "; ".join(below) if below else "no LoRC point below the quantization-only line there",
            "yes" if below else "no",
        ]
    )
    sp = {(r["name"], r["batch"], r["context"]): r for r in res.get("speed", [])}
    longest = max((r["context"] for r in res.get("speed", [])), default=0)
    f = sp.get(("full", 1, longest))
    lorc_rows = [
        r for (n, b, c), r in sp.items() if n.startswith("lorc") and (b, c) == (1, longest)
    ]
    d = sp.get((_default_name(res), 1, longest))
    for r in ([d] if d else []) + [r for r in lorc_rows if r is not d]:
        if not f:
            break
        rows.append(
            [
                f"a real drop in peak memory at {longest} tokens of context ({r['name']})",
                f"peak {f['peak_mib']:.0f} → {r['peak_mib']:.0f} MiB above the model; cache "
                f"{f['cache_mib']:.1f} → {r['cache_mib']:.1f} MiB",
                "yes" if r["peak_mib"] < f["peak_mib"] else "no",
            ]
        )
    return rows


def render(res: dict) -> str:
    q = res["quality"]
    full = next(r for r in q if r["family"] == "full")
    fb = full["bytes_per_token"]
    srcs = list(full["ppl"])
    rows = []
    for r in q:
        a = r.get("answers")
        rows.append(
            [r["name"], r["quant"], f"{r['bytes_per_token']:.0f}",
             f"{100 * (1 - r['bytes_per_token'] / fb):.1f}%"]
            + [f"{r['ppl'][s]:.3f}" for s in srcs]
            + [f"{_increase(r, full):+.1f}%",
               f"{a['top1']:.3f}" if a else "", f"{a['overlap']:.3f}" if a else ""]
        )  # fmt: skip
    d = res["default"]
    lines = [
        "# LoRC: low-rank KV-cache compression of SmolLM2-135M-Instruct",
        "",
        "Rendered by `python -m bench lorc` from "
        + ("bench/results/lorc-part-*.json" if res.get("parts") else "bench/results/lorc.json")
        + f" — {res['date']}, "
        f"{res['machine']}, device {res['device']}, {res['dtype']}, {res['threads']} thread(s), "
        f"{res['seconds'] / 60:.1f} min"
        + (
            f", 1-min load average {res['load'][0]:.1f} at the start, {res['load'][1]:.1f} at "
            "the end (a 2-core VM shared with other suites)"
            if "load" in res
            else ""
        )
        + "."
        + (
            " Options: "
            + ", ".join(
                f"--{k.replace('_', '-')} {v}"
                for k, v in res["options"].items()
                if not (res.get("speed_parts") and k in ("speed_contexts", "decode_steps"))
            )
            + "."
            if "options" in res
            else ""
        ),
        *(
            [
                "Measured as parallel processes after the same calibration and default (rows "
                "merged): "
                + "; ".join(
                    f"{', '.join(p.get('families', ['all']))} ({p['date']}, "
                    f"{p['seconds'] / 60:.1f} min)"
                    for p in res["parts"]
                )
                + "."
            ]
            if res.get("parts")
            else []
        ),
        "",
        f"Model: {res['model']} ({res['layout']['n_layers']} layers, KV width "
        f"{res['layout']['kv_dim']}; full cache {res['layout']['full_bytes_per_token']} B/token "
        'in bf16 or more in fp32 — "saved" is against the full cache measured in the same run).',
        f"Calibration: {res['calibration_tokens']} tokens of the calibration halves (HH-RLHF first "
        "half, TREC train, SMS even rows). Evaluation: "
        + ", ".join(f"{s} {n} tokens" for s, n in res["eval_tokens_per_source"].items())
        + " of the disjoint evaluation halves (HH-RLHF second half, TREC test, SMS odd rows), "
        f"512-token windows fed as {PREFILL} tokens + the rest read from the cache.",
        "",
        f"Default (chosen on calibration text only): greedy ranks; for each latent storage, the "
        f"smallest budget whose perplexity on {res['calibration_dev_tokens']} held-out "
        "calibration tokens (the calibration halves, never the evaluation text) stays within "
        f"×{d['ceiling']} of the full model's ({res['full_calibration_dev_ppl']:.3f}); the "
        "storage with the fewest bytes wins: "
        + "; ".join(
            f"{c['storage']} {c['bytes_per_token']} B/token at {c['calibration_dev_ppl']:.3f}"
            for c in d.get("candidates", [])
        )
        + f" → **{d.get('storage', 'int8')}**, {d['bytes_per_token']} B/token "
        f"(calibration perplexity {d['calibration_dev_ppl']:.3f}). Its ablations: the same ranks "
        "with float latents (low rank alone), every channel with the same codes (latent "
        "quantization alone), and `kv-int4g16` (plain 4-bit K/V, groups of 16: quantization "
        "alone).",
        "",
        "## Perplexity vs KV bytes",
        "",
        "`B/token`: bytes per token the cache really holds (sum of its tensors' nbytes after a "
        "window / tokens). `Δppl`: mean relative perplexity increase over the three sources. "
        f"`top1`/`overlap`: the PRBoost proposer's top-10 answer words on {res['answer_texts']} "
        f"wrench-trec dev texts × templates {', '.join(res['templates'])}, vs the full model.",
        "",
        markdown_table(
            ["setting", "storage", "B/token", "saved"]
            + [f"ppl {s}" for s in srcs]
            + ["Δppl", "top1", "overlap"],
            rows,
        ),  # fmt: skip
        "",
        "![perplexity vs KV bytes](RESULTS-lorc.png)",
        "",
        "## Targets",
        "",
        markdown_table(["target", "measured", "met"], targets(res)),
        "",
    ]
    if res["speed"]:
        srows = [
            [s["name"], s["batch"], s["context"], f"{s['cache_mib']:.1f}", f"{s['peak_mib']:.0f}",
             f"{s['prefill_tok_s']:.0f}", f"{s['decode_tok_s']:.1f}"]
            for s in res["speed"]
        ]  # fmt: skip
        lines += [
            "## Memory and speed",
            "",
            "Chunked prefill (512 tokens per call) to the context, then "
            + (
                f"{res['decode_steps']} greedy decode steps"
                if not res.get("speed_parts")
                else "a few greedy decode steps (`--decode-steps` of the speed processes: "
                + ", ".join(
                    str(p.get("decode_steps") or "not recorded") for p in res["speed_parts"]
                )
                + ")"
            )
            + ". `cache MiB`: the cache's tensors at the end; `peak MiB`: peak "
            "memory above the loaded model during prefill + decode (CPU: VmHWM reset per run; "
            "CUDA: max allocated). Scaled down for a shared CPU: batch 16 only at 512 tokens, "
            "the longest context for the full cache and the default only, fp8 and float LoRC "
            "only up to 2k, few decode steps (tokens/s are rough).",
            *(
                [
                    "These rows come from speed-only processes run beside the quality run "
                    "(`--speed-only --speed-part`, rows written as measured): "
                    + "; ".join(
                        f"{p['part']} ({p['date']}, {p['seconds'] / 60:.1f} min, 1-min load "
                        f"{p['load'][0]:.1f} → {p['load'][1]:.1f}"
                        + (
                            f", default {p['default']['bytes_per_token']} B/token"
                            if p.get("default")
                            else ""
                        )
                        + ")"
                        for p in res["speed_parts"]
                    )
                    + "."
                ]
                if res.get("speed_parts")
                else []
            ),
            *(
                [
                    f"These rows come from a speed-only run (`--speed-only`, "
                    f"{res['speed_run']['date']}, {res['speed_run']['seconds'] / 60:.1f} min) "
                    "of the same code: the same calibration and default schedule "
                    f"({res['speed_run']['default']['bytes_per_token']} B/token)."
                ]
                if res.get("speed_run")
                else []
            ),
            "",
            markdown_table(
                [
                    "setting",
                    "batch",
                    "context",
                    "cache MiB",
                    "peak MiB",
                    "prefill tok/s",
                    "decode tok/s",
                ],
                srows,
            ),  # fmt: skip
            "",
        ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q = res["quality"]
    full = next(r for r in q if r["family"] == "full")
    fb = full["bytes_per_token"]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    groups: dict[str, list] = {}
    for r in q:
        if r["family"] == "plain-svd":  # thousands of percent: said in the table, not plotted
            continue
        label = (
            r["family"]
            if r["family"] in ("full", "kv-quant", "hf-quantized")
            else (f"{r['family']} {r['quant']}")
        )
        groups.setdefault(label, []).append(
            (100 * (1 - r["bytes_per_token"] / fb), _increase(r, full))
        )
    for label, pts in sorted(groups.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.axhline(5, color="grey", ls=":", lw=1)
    ax.axvline(60, color="grey", ls=":", lw=1)
    ax.set_xlabel("KV bytes saved vs full cache (%)")
    ax.set_ylabel("perplexity increase (%)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("SmolLM2-135M: perplexity vs KV-cache bytes (plain SVD off the chart)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FAMILY_ORDER = ("full", "kv-quant", "hf-quantized", "lorc-uniform", "lorc-progressive",
                "lorc-greedy", "plain-svd", "lorc-ablation", "lorc-default")  # fmt: skip


def _merged() -> dict | None:
    """lorc.json, with the rows of any part runs (``--families``, run in parallel after the same
    calibration and default) that it lacks; or the parts alone when there is no whole run."""
    parts = [json.loads(p.read_text()) for p in sorted(JSON_PATH.parent.glob("lorc-part-*.json"))]
    if JSON_PATH.exists():
        res = json.loads(JSON_PATH.read_text())
    elif parts:  # the part that measured the full model's calibration perplexity heads it
        res = dict(max(parts, key=lambda p: p.get("full_calibration_dev_ppl") is not None))
    else:
        return None
    if parts:
        names = {r["name"] for r in res["quality"]}
        rows = list(res["quality"])
        for part in parts:
            rows += [r for r in part["quality"] if r["name"] not in names]
            names |= {r["name"] for r in part["quality"]}
        order = {f: i for i, f in enumerate(FAMILY_ORDER)}
        res["quality"] = sorted(rows, key=lambda r: order.get(r["family"], len(order)))
        res["parts"] = [
            {k: p[k] for k in ("date", "seconds", "families", "load") if k in p} for p in parts
        ]
    return res


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench lorc")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--dtype",
        default="bfloat16",
        help="model dtype (default bfloat16: the full cache is 16-bit, as in a deployment)",
    )
    p.add_argument("--calib-tokens", type=int, default=768, help="per source, 256-token windows")
    p.add_argument("--eval-tokens", type=int, default=1024, help="per source")
    p.add_argument("--fit-steps", type=int, default=6)
    p.add_argument(
        "--budgets",
        default="float:0.75,0.5;int8:0.45,0.4;int4:0.3,0.25",
        help="LoRC uniform/progressive/greedy rows: storage:ratios of the full cache;...",
    )
    p.add_argument("--answer-texts", type=int, default=60)
    p.add_argument("--all-answers", action="store_true", help="answers for every LoRC setting")
    p.add_argument("--speed-contexts", default="512,2048,8192")
    p.add_argument("--decode-steps", type=int, default=8)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument(
        "--speed-only",
        action="store_true",
        help="only the memory/speed section, into results/lorc-speed.json (it replaces the "
        "speed rows of lorc.json when rendering)",
    )
    p.add_argument("--render-only", action="store_true")
    p.add_argument(
        "--default-json",
        type=Path,
        default=None,
        help="take the default from this file (written by a run that fitted it, "
        "bench/results/lorc-default.json; waited for) instead of fitting it again",
    )
    p.add_argument(
        "--cache-dtype",
        default=None,
        help="float dtype every cache keeps (full K/V, float latents), e.g. bfloat16 with "
        "--dtype float32 on a CPU without bf16 arithmetic: 16-bit caches, float32 compute",
    )
    p.add_argument("--batch16-context", type=int, default=512, help="0: no batch-16 speed rows")
    p.add_argument(
        "--speed-part",
        choices=("baselines", "lorc"),
        default=None,
        help="only the speed rows of the baselines (no calibration) or of LoRC, written row by row "
        "to results/lorc-speed-part-*.json and merged when rendering",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: one budget, tiny sizes")
    p.add_argument(
        "--families",
        type=lambda v: set(filter(None, v.split(","))),
        default=None,
        help="measure only these settings' families (full, kv-quant, hf-quantized, plain-svd, "
        "lorc-ablation, lorc-default, lorc-greedy, ...) into results/lorc-part-*.json, merged "
        "when rendering: one run split over processes (use --default-json in all but one)",
    )
    args = p.parse_args(argv)
    if not args.render_only:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, str(args.threads))
        args.data = args.data or Path(
            os.environ.get("FRUGAL_DATA_DIR", ROOT.parent.parent / "shared/data")
        )
        args.contexts = [int(c) for c in args.speed_contexts.split(",") if c]
        res = run(args)
        if args.quick:
            print(json.dumps(res, indent=1)[:3000])
            return 0
        JSON_PATH.parent.mkdir(parents=True, exist_ok=True)
        if args.speed_part:
            res = None  # written row by row by the speed part itself
        elif args.families:
            res["families"] = sorted(args.families)
            out = JSON_PATH.with_name(f"lorc-part-{'+'.join(sorted(args.families))}.json")
        else:
            out = SPEED_JSON_PATH if args.speed_only else JSON_PATH
        if res is not None:
            out.write_text(json.dumps(res, indent=1))
    res = _merged()
    if res is None:
        print(f"{JSON_PATH} not written yet: run without --speed-only, then --render-only")
        return 0
    if SPEED_JSON_PATH.exists():
        speed = json.loads(SPEED_JSON_PATH.read_text())
        res["speed"] = speed["speed"]
        res["speed_run"] = {k: speed[k] for k in ("date", "machine", "seconds", "default")}
    speed_parts = sorted(JSON_PATH.parent.glob("lorc-speed-part-*.json"))
    if speed_parts:  # row-by-row speed parts replace the rows of the settings they measured
        parts = [json.loads(p.read_text()) for p in speed_parts]
        names = {r["name"] for p in parts for r in p["speed"]}
        res["speed"] = [r for r in res.get("speed", []) if r["name"] not in names]
        res["speed"] += [r for p in parts for r in p["speed"]]
        res["speed_parts"] = [
            {k: p.get(k) for k in ("part", "date", "seconds", "load", "default", "decode_steps")}
            for p in parts
        ]
    md = render(res)
    MD_PATH.write_text(md + "\n")
    plot(res, PNG_PATH)
    print(md)
    print(f"wrote {MD_PATH} and {PNG_PATH}")
    return 0
