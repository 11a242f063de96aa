"""GPU check of models/: causal LM answers, the answer pass, the fine-tuned learner, label model,
LoRC (low-rank latent KV cache), the DORM reward model and a PTLoss distillation.

    python -m bench gpu_check [--device cuda] [--n-texts N] [--threads 1] [--strict]

Needs no network and no hub model: a tiny random Llama (causal LM) and a tiny random BERT (learner)
are built from configs with a byte-level BPE tokenizer trained here on synthetic sentences, saved
with ``save_pretrained`` to a temp folder and loaded back through Frugal's own loaders. Without a
GPU it falls back to "cpu" (bf16 then runs on the CPU), runs every path there (well under two
minutes) and ends with a SKIP row naming the GPU legs it could not run. One table row per check:
name, device, seconds, result, PASS/FAIL/SKIP. Exit code 0 when no row FAILs (``--strict``: no
row SKIPs either, so a CPU-only machine fails it; the label model needs ``snorkel``,
``pyahocorasick`` and ``google-re2``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOPIC_WORDS = (
    ("football", "goal", "player", "match", "team", "coach", "stadium", "score", "league", "ball"),
    ("money", "bank", "price", "market", "stock", "budget", "salary", "profit", "loan", "invest"),
)
FILLER = (
    "the", "a", "today", "yesterday", "someone", "said", "that", "this", "was", "really", "about",
    "our", "new", "big", "small", "old", "good", "bad", "great", "people", "city", "night",
    "morning", "after", "before", "because", "while", "with", "from", "into", "over",
)  # fmt: skip


@dataclass
class Row:
    name: str
    device: str
    seconds: float
    result: str
    status: str  # PASS | FAIL | SKIP


# --------------------------------------------------------------------------- synthetic data
def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n short sentences (6-14 words) and labels (n,): class c draws 2-4 words from topic c."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    texts = []
    for c in y:
        words = list(rng.choice(FILLER, size=rng.integers(4, 11)))
        for w in rng.choice(TOPIC_WORDS[c], size=rng.integers(2, 5)):
            words.insert(int(rng.integers(0, len(words) + 1)), str(w))
        texts.append(" ".join(words).capitalize() + ".")
    return texts, y


def build_tokenizer(folder: Path):
    """A byte-level BPE tokenizer (GPT-2 style "Ġ" word marker) trained on synthetic sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus, _ = make_texts(2000, seed=1)
    corpus += ["This text is about", "The answer to this is a", "Category:", "In one word"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        show_progress=False,
        special_tokens=["<|endoftext|>", "<pad>", "[CLS]", "[SEP]", "[MASK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",  # noqa: S106 - token names, not secrets
        pad_token="<pad>",  # noqa: S106
        cls_token="[CLS]",  # noqa: S106
        sep_token="[SEP]",  # noqa: S106
        mask_token="[MASK]",  # noqa: S106
    )
    fast.save_pretrained(folder)
    return fast


def build_models(root: Path) -> tuple[Path, Path]:
    """Save a tiny random LlamaForCausalLM and a tiny random BertModel; return their folders."""
    import torch
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    lm_dir, enc_dir = root / "tiny-llama", root / "tiny-bert"
    tok = build_tokenizer(lm_dir)
    tok.save_pretrained(enc_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.1,  # spread the logits: 0.02 leaves near-ties everywhere
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(lm_dir)
    bert = BertConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    BertModel(bert).save_pretrained(enc_dir)
    return lm_dir, enc_dir


# --------------------------------------------------------------------------- comparisons
def top1_agreement(
    ids: np.ndarray, ref_ids: np.ndarray, ref_probs: np.ndarray, tol: float
) -> tuple[float, float]:
    """(exact, tie-tolerant) share of rows whose top-1 word matches the reference's.

    ids, ref_ids, ref_probs: (N, k). Tie-tolerant: the top-1 word also counts when the reference
    gives it a probability within ``tol`` of its own top-1 (a near-tie that rounding may flip)."""
    exact = ids[:, 0] == ref_ids[:, 0]
    in_ref = ref_ids == ids[:, :1]  # (N, k)
    p_ref = np.where(in_ref.any(1), (ref_probs * in_ref).sum(1), -1.0)  # (N,)
    close = p_ref >= ref_probs[:, 0] - tol
    return float(exact.mean()), float((exact | close).mean())


def timed(fn, device: str):
    """(result, seconds) of fn(), synchronizing the GPU around it."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------- 1. causal LM
def check_causal_lm(lm_dir: Path, device: str, vocab, n: int) -> list[Row]:
    """Restricted top-k next-token answers on ``device`` (bf16, fp32) vs the cpu fp32 reference."""
    from models.lm import load_causal_lm
    from models.prboost.templates import DEFAULT_TEMPLATES, build_prompts

    texts, _ = make_texts(n, seed=2)
    template = DEFAULT_TEMPLATES["text_classification"][0]
    ref_lm = load_causal_lm(str(lm_dir), device="cpu", dtype="float32")
    prompts = build_prompts(ref_lm, template, texts)
    (ref_ids, ref_p), _ = timed(lambda: ref_lm.next_token_topk(prompts, 5, vocab, 16), "cpu")
    rows = []
    # dtype None: the library's default (bf16 on cuda); on a cpu fallback force bf16 to test it
    for dtype, min_exact in ((None, 0.90), ("float32", 0.99)):
        want = dtype or ("bfloat16" if device == "cpu" else None)
        lm = load_causal_lm(str(lm_dir), device=device, dtype=want)
        got = str(lm.model.dtype).removeprefix("torch.")
        lm.next_token_topk(prompts[:8], 5, vocab, 64)  # warm-up (CUDA context, kernels)
        (ids, probs), sec = timed(lambda lm=lm: lm.next_token_topk(prompts, 5, vocab, 64), device)
        shape_ok = ids.shape == (n, 5) and probs.shape == (n, 5) and (ids[:, 0] >= 0).all()
        exact, tied = top1_agreement(ids, ref_ids, ref_p, tol=0.02 if got != "float32" else 1e-4)
        ok = shape_ok and exact >= min_exact and tied >= 0.99
        if device.startswith("cuda") and dtype is None and got != "bfloat16":
            ok, got = False, f"{got} (expected bfloat16 by default on cuda)"
        rows.append(
            Row(
                f"causal_lm top-1 {got} vs cpu float32",
                device,
                sec,
                f"n={n} top-1 agree {exact:.3f} (near-ties ok {tied:.3f}); "
                f"max |dp1| {np.abs(probs[:, 0] - ref_p[:, 0]).max():.4f}",
                "PASS" if ok else "FAIL",
            )
        )
    return rows


# --------------------------------------------------------------------------- 2. answer pass
def check_answers(lm_dir: Path, device: str, vocab, n: int, cache_dir: Path) -> list[Row]:
    """compute_answer_index over n texts x the two default templates (shared-prefix path)."""
    from models.lm import load_causal_lm
    from models.prboost.answers import compute_answer_index
    from models.prboost.templates import DEFAULT_TEMPLATES, build_prompts

    texts, _ = make_texts(n, seed=3)
    templates = DEFAULT_TEMPLATES["text_classification"]  # both "{text}\n...": one prefix pass
    k = 10
    kw = {"vocab": vocab, "cache_dir": cache_dir, "use_cache": False}
    results, rows = {}, []
    for dev in dict.fromkeys([device, "cpu"]):
        lm = load_causal_lm(str(lm_dir), device=dev, dtype=None if dev != "cpu" else "float32")
        compute_answer_index(lm, texts[:64], templates, k, **kw)  # warm-up
        index, sec = timed(lambda lm=lm: compute_answer_index(lm, texts, templates, k, **kw), dev)
        problems = []
        if index.n != n or index.template_ids != [t.id for t in templates]:
            problems.append(f"index n={index.n} templates={index.template_ids}")
        for t in templates:
            ids, probs = index.topk_ids(t.id), index.topk_probs(t.id)
            if ids.shape != (n, index.k) or probs.shape != (n, index.k):
                problems.append(f"{t.id} shapes {ids.shape} {probs.shape}")
            elif (ids < 0).any() or (ids >= len(vocab)).any():
                problems.append(f"{t.id} word ids outside 0..{len(vocab) - 1}")
            elif (np.diff(probs, axis=1) > 1e-6).any() or (probs.sum(1) > 1 + 1e-3).any():
                problems.append(f"{t.id} probabilities not sorted or sum > 1")
        # the shared-prefix pass (KV cache + suffix) must answer like the full prompts
        m = min(n, 256)
        t = templates[-1]
        full_ids, full_p = lm.next_token_topk(build_prompts(lm, t, texts[:m]), k, vocab, 64)
        exact, tied = top1_agreement(index.topk_ids(t.id)[:m], full_ids, full_p, tol=0.02)
        if tied < 0.99:
            problems.append(f"prefix-cached vs full prompts top-1 agree {exact:.3f}/{tied:.3f}")
        results[dev] = (index, sec)
        rate = n / sec
        rows.append(
            Row(
                f"answer index {n} texts x {len(templates)} templates",
                dev,
                sec,
                f"{rate:,.0f} texts/s, batch {64 if dev.startswith('cuda') else 4}; "
                f"prefix-cache vs full top-1 {exact:.3f}"
                + (f"; {'; '.join(problems)}" if problems else ""),
                "FAIL" if problems else "PASS",
            )
        )
    if device != "cpu":
        (g, g_sec), (c, c_sec) = results[device], results["cpu"]
        t = templates[0].id
        exact, tied = top1_agreement(g.topk_ids(t), c.topk_ids(t), c.topk_probs(t), tol=0.02)
        rows.append(
            Row(
                "answer index top-1 vs cpu",
                device,
                g_sec,
                f"speed-up {c_sec / g_sec:.1f}x; top-1 agree {exact:.3f} (near-ties {tied:.3f})",
                "PASS" if exact >= 0.9 and tied >= 0.99 else "FAIL",
            )
        )
    return rows


# --------------------------------------------------------------------------- 3. learner
def check_learner(enc_dir: Path, device: str) -> list[Row]:
    """FineTunedEncoder: 3 epochs on a separable topic problem, held-out accuracy."""
    from models.prboost.learners import FineTunedEncoder

    texts, y = make_texts(800, seed=4)
    train, test = slice(0, 600), slice(600, 800)
    rows = []
    for dev in dict.fromkeys([device, "cpu"]):
        clf = FineTunedEncoder(
            n_classes=2, model_name=str(enc_dir), epochs=3, lr=1e-3, max_length=32, device=dev
        )
        _, sec = timed(lambda clf=clf: clf.fit(texts[train], y[train]), dev)
        proba = clf.predict_proba(texts[test])
        acc = float((proba.argmax(1) == y[test]).mean())
        ok = proba.shape == (200, 2) and np.allclose(proba.sum(1), 1, atol=1e-4) and acc >= 0.8
        rows.append(
            Row(
                "fine-tuned encoder 3 epochs x 600",
                dev,
                sec,
                f"proba {proba.shape}, held-out acc {acc:.3f} (chance 0.5)",
                "PASS" if ok else "FAIL",
            )
        )
    return rows


# --------------------------------------------------------------------------- 4. label model
def check_label_model(device: str) -> list[Row]:
    """SnorkelLabelModel fitted on ``device`` vs on cpu (same synthetic label matrix)."""
    try:
        import models.prboost.label_models as lmod
    except ImportError as exc:
        why = f"not importable ({exc}); needs snorkel, pyahocorasick, google-re2"
        return [Row("snorkel label model", device, 0.0, why, "SKIP")]
    rng = np.random.default_rng(5)
    n, m, k = 5000, 12, 3
    y = rng.integers(0, k, size=n)
    acc = rng.uniform(0.55, 0.9, size=m)
    votes = np.where(rng.random((n, m)) < acc, y[:, None], rng.integers(0, k, size=(n, m)))
    votes = np.where(rng.random((n, m)) < 0.3, votes, -1)  # each rule covers ~30%
    L = lmod.LabelMatrix.from_dense(votes)
    probas, rows = {}, []
    for dev in dict.fromkeys(["cpu", device]):
        model = lmod.SnorkelLabelModel(n_epochs=200, device=dev)
        _, sec = timed(lambda model=model: model.fit(L, k, seed=0), dev)
        on = str(model.model_.mu.device)
        probas[dev] = proba = model.predict_proba(L)
        covered = L.covered()
        hit = float((proba.argmax(1) == y)[covered].mean())
        diff = float(np.abs(proba - probas["cpu"]).max())
        ok = proba.shape == (n, k) and hit >= 0.7 and diff < 1e-2 and on.startswith(dev)
        rows.append(
            Row(
                "snorkel label model fit",
                dev,
                sec,
                f"mu on {on}; acc on covered {hit:.3f}; max |p - p_cpu| {diff:.1e}",
                "PASS" if ok else "FAIL",
            )
        )
    return rows if device != "cpu" else rows[:1]


# --------------------------------------------------------------------------- main
# --------------------------------------------------------------------------- 5. LoRC
def check_lorc(lm_dir: Path, device: str) -> list[Row]:
    """LoRC on the tiny Llama (float32): full rank reproduces the logits; greedy ranks with int8
    latents at half the bytes generate through the latent cache, which holds what it states."""
    import torch

    from models.lm import load_causal_lm
    from models.lorc import (
        QuantSpec,
        cache_nbytes,
        calibrate,
        compress,
        factorize,
        full_schedule,
        greedy,
        kv_layout,
        new_cache,
    )

    model = load_causal_lm(str(lm_dir), device=device, dtype="float32").model
    vocab_size = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (4, 48), generator=g).to(device)
    mask = torch.ones_like(ids)
    (factors, sec_fit) = timed(lambda: factorize(model, calibrate(model, [(ids, mask)])), device)
    rows = []
    with torch.inference_mode():
        full = compress(model, factors, full_schedule(kv_layout(model)))
        diff = (full(ids).logits - model(ids).logits).abs().max().item()
        rows.append(
            Row("lorc full rank vs original", device, sec_fit, f"max |dlogit| {diff:.2e}",
                "PASS" if diff < 1e-3 else "FAIL")
        )  # fmt: skip
        spec = QuantSpec(8)
        layout = kv_layout(model, spec)
        small = compress(model, factors, greedy(layout, factors, 0.5 * layout.full_bytes), spec)
        cache = new_cache(small)
        out, sec = timed(
            lambda: small.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16,
                                   do_sample=False, cache=cache, pad_token_id=0),
            device,
        )  # fmt: skip
        tokens = ids.shape[0] * (out.shape[1] - 1)
        per_token = cache_nbytes(cache) / tokens
        ok = out.shape == (4, 64) and per_token <= 0.5 * layout.full_bytes
        rows.append(
            Row("lorc int8 latent cache generate", device, sec,
                f"{per_token:.0f} B/token vs full {layout.full_bytes} "
                f"({100 * (1 - per_token / layout.full_bytes):.0f}% saved)",
                "PASS" if ok else "FAIL")
        )  # fmt: skip
    return rows


# --------------------------------------------------------------------------- 6. DORM
def check_dorm(enc_dir: Path, device: str, cache_dir: Path) -> list[Row]:
    """DORM's reward model: pairs whose chosen text is on topic 0 and rejected on topic 1,
    encoded by the tiny BERT (``encode_pairs``), then the "top" reward model (the encoder's last
    layer + a head) trained with per-pair weights through ``train_reward_model`` on ``device``;
    held-out pair accuracy, and the scores it gives through ``score_texts``."""
    from models.dorm import reward as rw
    from models.dorm.data import PairSet
    from models.dorm.pipeline import DormConfig, encode_pairs, score_texts, train_reward_model

    good, y_good = make_texts(800, seed=7)
    good = [t for t, c in zip(good, y_good) if c == 0][:240]
    bad = [t for t, c in zip(*make_texts(800, seed=8)) if c == 1][:240]
    prompts = [f"Question {i}: what is new?" for i in range(240)]
    pairs = PairSet(prompts, good, bad)
    train_rows, test_rows = np.arange(180), np.arange(180, 240)
    weights = np.random.default_rng(9).uniform(0.5, 1.5, size=len(train_rows))
    reward = rw.RewardConfig(kind="top", epochs=3, lr=1e-3, head_lr=1e-2, batch_size=32)
    config = DormConfig(reward=reward, encoder=str(enc_dir), n_top=1, max_length=32)
    data = encode_pairs(pairs, config, cache_dir=cache_dir)  # the encoder pass: cached, reused
    rows = []
    for dev in dict.fromkeys([device, "cpu"]):
        fit = lambda dev=dev: train_reward_model(  # noqa: E731
            data, train_rows, config, weights=weights, device=dev
        )
        model, sec = timed(fit, dev)
        on = str(model.device)
        acc = rw.accuracy(model, data, test_rows)
        scores = score_texts(model, config, prompts[-8:], good[-8:], cache_dir=cache_dir)
        ok = on.startswith(dev) and acc >= 0.8 and scores.shape == (8,)
        ok = ok and bool(np.isfinite(scores).all())
        rows.append(
            Row(
                "dorm reward model (top layer) 3 epochs x 180 pairs",
                dev,
                sec,
                f"params on {on}; held-out pair acc {acc:.3f} (chance 0.5); "
                f"{len(scores)} scores finite {bool(np.isfinite(scores).all())}",
                "PASS" if ok else "FAIL",
            )
        )
    return rows


# --------------------------------------------------------------------------- 7. PTLoss
def check_ptloss(enc_dir: Path, device: str) -> list[Row]:
    """A PTLoss distillation of a noisy teacher into a classifier built from the tiny BERT: ε
    chosen on dev (``select_eps``), 3 epochs of ``train(loss="ptloss")`` on ``device``, held-out
    accuracy against the gold labels, and predictions returned as numpy from the device."""
    from models.ptloss import select_eps
    from models.ptloss.distill import TrainConfig, predict_proba, train
    from models.ptloss.students import build_classifier, encode

    texts, y = make_texts(700, seed=10)
    rng = np.random.default_rng(11)
    confidence = rng.uniform(0.6, 0.95, size=len(y))
    teacher = np.where(np.eye(2)[y] > 0, confidence[:, None], 1 - confidence[:, None])
    train_rows, dev_rows, test_rows = np.arange(500), np.arange(500, 600), np.arange(600, 700)
    selection = select_eps(teacher[dev_rows], y[dev_rows], n_candidates=16, seed=0)
    rows = []
    for dev in dict.fromkeys([device, "cpu"]):
        model, tok = build_classifier(str(enc_dir), n_classes=2, seed=0)
        model.to(dev)
        enc = encode(tok, texts, max_length=32)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-3)

        def run(model=model, enc=enc, cfg=cfg):
            return train(model, enc.subset(train_rows), loss="ptloss",
                         teacher=teacher[train_rows], eps=selection.eps, config=cfg)  # fmt: skip

        _, sec = timed(run, dev)
        on = str(next(model.parameters()).device)
        proba = predict_proba(model, enc.subset(test_rows))
        acc = float((proba.argmax(1) == y[test_rows]).mean())
        ok = on.startswith(dev) and proba.shape == (100, 2) and acc >= 0.8
        ok = ok and bool(np.allclose(proba.sum(1), 1, atol=1e-4))
        rows.append(
            Row(
                "ptloss distillation 3 epochs x 500",
                dev,
                sec,
                f"params on {on}; eps #{selection.index} of {len(selection.mse)} "
                f"({'KD' if selection.is_kd else 'perturbed'}); held-out acc {acc:.3f} "
                f"(chance 0.5)",
                "PASS" if ok else "FAIL",
            )
        )
    return rows


def print_table(rows: list[Row]) -> None:
    headers = ["check", "device", "seconds", "result", "status"]
    cells = [headers] + [[r.name, r.device, f"{r.seconds:.2f}", r.result, r.status] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    line = lambda c: "| " + " | ".join(x.ljust(w) for x, w in zip(c, widths)) + " |"  # noqa: E731
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells[1:]:
        print(line(c))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench gpu_check", description=__doc__)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument(
        "--n-texts", type=int, default=None,
        help="texts of the answer-pass check (default 2000 on a GPU, 500 on the CPU)",
    )  # fmt: skip
    p.add_argument("--n-prompts", type=int, default=256, help="prompts of the causal LM check")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--strict", action="store_true", help="a skipped check fails the run too")
    args = p.parse_args(argv)

    import torch
    import transformers

    from models.lm import resolve_device
    from models.prboost.answers import AnswerVocab

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    device = resolve_device(args.device)
    if args.n_texts is None:
        args.n_texts = 2000 if device.startswith("cuda") else 500
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, ", end="")
    print(f"python {sys.version.split()[0]}, cpu threads {args.threads}")
    if device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(device)} (device {device})")
    else:
        print("no GPU: falling back to device 'cpu' (the bf16 check runs bf16 on the CPU)")
    t_all = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="frugal-gpu-check-") as tmp:
        root = Path(tmp)
        os.environ["FRUGAL_CACHE_DIR"] = str(root / "cache")
        lm_dir, enc_dir = build_models(root)
        from models.lm import load_causal_lm

        # use_dictionary=False: the default dictionary needs the english-words package
        vocab_lm = load_causal_lm(str(lm_dir), device="cpu", dtype="float32")
        vocab = AnswerVocab.from_tokens(vocab_lm.vocab_tokens(), use_dictionary=False)
        print(f"tiny models in {root}: vocab {len(vocab_lm.tokenizer)}, {len(vocab)} answer words")
        checks = [
            ("causal_lm", lambda: check_causal_lm(lm_dir, device, vocab, args.n_prompts)),
            ("answer index", lambda: check_answers(lm_dir, device, vocab, args.n_texts, root)),
            ("fine-tuned encoder", lambda: check_learner(enc_dir, device)),
            ("label model", lambda: check_label_model(device)),
            ("lorc", lambda: check_lorc(lm_dir, device)),
            ("dorm reward model", lambda: check_dorm(enc_dir, device, root / "cache")),
            ("ptloss distillation", lambda: check_ptloss(enc_dir, device)),
        ]
        for name, check in checks:
            t0 = time.perf_counter()
            try:
                rows += check()
            except Exception as exc:  # noqa: BLE001 - one broken path must not hide the others
                traceback.print_exc()
                msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200]
                rows.append(Row(name, device, time.perf_counter() - t0, msg, "FAIL"))
    if not device.startswith("cuda"):
        skipped = [name for name, _ in checks]
        rows.append(
            Row("GPU legs", "cuda", 0.0,
                f"no CUDA device: skipped on the GPU ({', '.join(skipped)}); "
                "each ran on the CPU above", "SKIP")
        )  # fmt: skip
    print()
    print_table(rows)
    bad = {"FAIL", "SKIP"} if args.strict else {"FAIL"}
    failed = [r for r in rows if r.status in bad]
    counts = ", ".join(f"{sum(r.status == s for r in rows)} {s}" for s in ("PASS", "FAIL", "SKIP"))
    print(f"\n{counts} in {time.perf_counter() - t_all:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
