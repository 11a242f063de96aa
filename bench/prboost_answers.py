"""LM answer pass throughput, prompt-rule matching over 1M cached documents, template comparison.

    python -m bench prboost_answers [--data DIR] [--sections pass,match,templates] [--dev-cap 160]
                                    [--docs 1000000] [--results bench/RESULTS-prboost_answers.md]

1. pass: prompts/s of the one-time LM pass (SmolLM2-135M-Instruct, template tc-about) on real
   wrench-youtube dev texts, for several batch sizes and 1 vs 2 torch threads; then the two
   default text-classification templates run separately vs sharing the text prefix.
2. match: a synthetic AnswerIndex of 1M documents x k=10 answer words (Zipf word distribution
   over 20,000 words, like real LM answers); ms per prompt rule via ``AnswerIndex.lookup`` and via
   the matching engine (``match_rules`` on a 1M-document Corpus). Target: <= 1 s per rule.
3. templates: each candidate template alone on the dev sets of wrench-youtube/sms/trec/semeval
   (capped at --dev-cap examples): half A proposes (its instances, its gold labels for the
   leave-one-out dev precision), half B is a held-out pool whose gold labels grade the top-10
   candidates; then the halves swap. Columns: held-out precision of the top-10, share of the
   top-10 at precision >= 0.6 (what the simulated annotator accepts), their pool coverage. The LM
   pass is cached on disk, so a rerun is fast.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench._report import machine, markdown_table

DATASETS = ("wrench-youtube", "wrench-sms", "wrench-trec", "wrench-semeval")


# --------------------------------------------------------------------------- 1. LM pass
def bench_pass(data: Path, n_texts: int) -> str:
    import torch

    from models.data import load_wrench
    from models.lm import load_causal_lm
    from models.prboost.answers import answer_vocab_for, compute_answer_index
    from models.prboost.templates import DEFAULT_TEMPLATES, build_prompts

    t0 = time.perf_counter()
    lm = load_causal_lm()
    load_s = time.perf_counter() - t0
    vocab = answer_vocab_for(lm)
    dev, _ = load_wrench(data / "wrench-youtube", "valid")
    texts = dev.texts[:n_texts]
    template = DEFAULT_TEMPLATES["text_classification"][0]
    prompts = build_prompts(lm, template, texts)
    n_tok = np.mean([len(lm.tokenizer(p)["input_ids"]) for p in prompts])
    rows = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for bs in (1, 4, 16):
                lm.next_token_topk(prompts[:2], 10, vocab, batch_size=bs)  # warm-up
                t = time.perf_counter()
                lm.next_token_topk(prompts, 10, vocab, batch_size=bs)
                dt = time.perf_counter() - t
                rows.append(
                    [threads, bs, f"{len(prompts) / dt:.1f}", f"{1000 * dt / len(prompts):.0f}"]
                )
        torch.set_num_threads(1)
        two = DEFAULT_TEMPLATES["text_classification"][:2]
        t = time.perf_counter()
        compute_answer_index(lm, texts, two, k=10, batch_size=4, use_cache=False)
        shared_s = time.perf_counter() - t
        t = time.perf_counter()
        for tpl in two:
            compute_answer_index(lm, texts, [tpl], k=10, batch_size=4, use_cache=False)
        separate_s = time.perf_counter() - t
        names = "+".join(tpl.id for tpl in two)
        n2 = 2 * len(texts)
        for label, dt in (("separately", separate_s), ("shared text prefix", shared_s)):
            rows.append([1, f"4, {names} {label}", f"{n2 / dt:.1f}", f"{1000 * dt / n2:.0f}"])
    finally:
        torch.set_num_threads(old)
    head = (
        f"LM pass: SmolLM2-135M-Instruct ({lm.model.dtype}, {lm.device}), template "
        f"{template.id}, {len(prompts)} wrench-youtube dev texts, {n_tok:.0f} tokens/prompt "
        f"on average; model load {load_s:.1f} s\n\n"
    )
    return head + markdown_table(["threads", "batch", "prompts/s", "ms/prompt"], rows)


# --------------------------------------------------------------------------- 2. matching
def bench_match(n_docs: int, n_rules: int = 200, seed: int = 0) -> str:
    from models.prboost.answers import AnswerIndex
    from models.prboost.matching import Corpus, match_rules
    from models.prboost.rules import PromptRule

    rng = np.random.default_rng(seed)
    n_words, k = 20_000, 10
    p = 1.0 / np.arange(1, n_words + 1) ** 1.1  # Zipf-like, as LM answer words are
    p /= p.sum()
    words = [f"w{i}" for i in range(n_words)]
    t = time.perf_counter()
    ids = rng.choice(n_words, size=(n_docs, k), p=p).astype(np.int32)  # (N, k)
    ids.sort(axis=1)
    dup = np.zeros_like(ids, dtype=bool)
    dup[:, 1:] = ids[:, 1:] == ids[:, :-1]
    ids[dup] = -1  # one word once per document
    gen_s = time.perf_counter() - t
    index = AnswerIndex(words, n_docs, k)
    t = time.perf_counter()
    index.add("t", ids)
    build_s = time.perf_counter() - t
    df = index.document_frequency("t")

    rule_words = [words[i] for i in rng.choice(n_words, size=n_rules, p=p)]
    t = time.perf_counter()
    sizes = [index.lookup("t", [w]).size for w in rule_words]
    lookup_ms = 1000 * (time.perf_counter() - t) / n_rules
    three = [[words[i] for i in rng.choice(n_words, size=3, p=p)] for _ in range(n_rules)]
    t = time.perf_counter()
    for ws in three:
        index.lookup("t", ws)
    lookup3_ms = 1000 * (time.perf_counter() - t) / n_rules
    top = words[int(np.argmax(df))]
    t = time.perf_counter()
    worst = index.lookup("t", [top]).size
    worst_ms = 1000 * (time.perf_counter() - t)

    corpus = Corpus(texts=[""] * n_docs, answer_index=index)
    rules = [PromptRule("t", (w,), 0) for w in rule_words]
    t = time.perf_counter()
    match_rules(rules, corpus)
    engine_ms = 1000 * (time.perf_counter() - t) / n_rules
    rows = [
        ["lookup, 1 word (Zipf-sampled)", f"{lookup_ms:.2f}", f"{np.mean(sizes):,.0f}"],
        ["lookup, 3 words", f"{lookup3_ms:.2f}", ""],
        [f"lookup, most frequent word ({top})", f"{worst_ms:.2f}", f"{worst:,}"],
        ["match_rules (engine), 1 word", f"{engine_ms:.2f}", ""],
    ]
    head = (
        f"Prompt-rule matching from the cache: {n_docs:,} documents x k={k}, {n_words:,} words "
        f"(Zipf 1.1), {n_rules} rules; synthetic answers {gen_s:.1f} s, inverted index built in "
        f"{build_s:.2f} s\n\n"
    )
    return head + markdown_table(["operation", "ms/rule", "mean matches"], rows)


# --------------------------------------------------------------------------- 3. templates
def _grade(cands, labels_b: np.ndarray, n_b: int):
    precs, accepted, cover = [], 0, []
    for c in cands:
        m = c.matches
        prec = float((labels_b[m] == c.rule.label).mean()) if m.size else 0.0
        precs.append(prec)
        accepted += prec >= 0.6
        cover.append(m.size / n_b)
    return precs, accepted, cover


def bench_templates(data: Path, dev_cap: int, top: int = 10) -> tuple[str, dict]:
    from models.data import load_wrench
    from models.lm import load_causal_lm
    from models.prboost.answers import compute_answer_index
    from models.prboost.matching import Corpus
    from models.prboost.propose import PromptProposer, ScoringConfig
    from models.prboost.templates import CANDIDATE_TEMPLATES, DEFAULT_TEMPLATES

    lm = load_causal_lm()
    rows, summary = [], {}
    for name in DATASETS:
        folder = data / name
        if not folder.is_dir():
            continue
        dev, _ = load_wrench(folder, "valid")
        rng = np.random.default_rng(0)
        order = rng.permutation(len(dev))[:dev_cap]
        dev = dev.subset(np.sort(order))
        templates = [t for t in CANDIDATE_TEMPLATES[dev.task_type] if t.style != "mask"]
        t = time.perf_counter()
        index = compute_answer_index(
            lm, dev.texts, templates, k=10, entities=dev.entities, batch_size=4
        )
        pass_s = time.perf_counter() - t
        half = np.zeros(len(dev), dtype=bool)
        half[rng.permutation(len(dev))[: len(dev) // 2]] = True
        variants = [(t.id, t.style, [t], True) for t in templates]
        defaults = DEFAULT_TEMPLATES[dev.task_type]
        variants.append(("defaults: " + "+".join(t.id for t in defaults), "", defaults, True))
        variants.append(("defaults, unranked (10 random)", "", defaults, False))
        for label, style, tpls, ranked in variants:
            precs, acc, cover = [], 0, []
            for a_mask in (half, ~half):
                a, b = np.flatnonzero(a_mask), np.flatnonzero(~a_mask)
                dev_a, dev_b = dev.subset(a), dev.subset(b)
                ia, ib = _sub_index(index, a), _sub_index(index, b)
                proposer = PromptProposer(
                    tpls, scoring=ScoringConfig() if ranked else ScoringConfig(max_jaccard=1.01)
                )
                cands = proposer.propose(
                    instance_indices=np.arange(len(a)),
                    dev=dev_a,
                    pool_corpus=Corpus(dev_b.texts, answer_index=ib, entities=dev_b.entities),
                    dev_corpus=Corpus(dev_a.texts, answer_index=ia, entities=dev_a.entities),
                    accepted=[],
                    judged=set(),
                    n_classes=dev.n_classes,
                    k=top if ranked else 10**6,
                )
                if not ranked:  # what an annotator would see without the scoring
                    pick = rng.permutation(len(cands))[:top]
                    cands = [cands[i] for i in pick]
                p, n_acc, c = _grade(cands, dev_b.labels, len(b))
                precs += p
                acc += n_acc
                cover += c
            n = max(len(precs), 1)
            summary[(name, label)] = (
                np.mean(precs) if precs else 0.0,
                acc / n,
                np.mean(cover or [0]),
            )
            rows.append(
                [
                    name,
                    label,
                    style,
                    f"{np.mean(precs) if precs else 0:.3f}",
                    f"{acc / n:.2f}",
                    f"{np.mean(cover) if cover else 0:.3f}",
                    len(precs),
                ]
            )
        rows.append(
            [
                name,
                "(LM pass)",
                "",
                "",
                "",
                "",
                f"{len(dev) * len(templates)} prompts {pass_s:.0f} s",
            ]
        )
    head = (
        f"Templates, each alone: dev sets capped at {dev_cap} examples, two halves (propose on "
        f"one, grade the top-{top} candidates on the other, swap)\n\n"
    )
    table = markdown_table(
        ["dataset", "template", "style", "precision@10", "accepted share", "coverage", "n"], rows
    )
    return head + table, summary


def _sub_index(index, rows: np.ndarray):
    from models.prboost.answers import AnswerIndex

    out = AnswerIndex(index.words, rows.size, index.k, model_id=index.model_id)
    for tid in index.template_ids:
        out.add(index.templates[tid], index.topk_ids(tid)[rows], index.topk_probs(tid)[rows])
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench prboost_answers", description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("FRUGAL_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--sections", default="pass,match,templates")
    parser.add_argument("--pass-texts", type=int, default=48)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--dev-cap", type=int, default=160)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads outside the pass table"
    )
    parser.add_argument("--results", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"pass", "match", "templates"}
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    out = [
        f"# prboost_answers — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\nMachine: {machine()}; "
        f"torch {torch.__version__}\n"
    ]
    texts: dict[str, str] = {}
    for s in sections:
        if s == "pass":
            text = bench_pass(args.data, args.pass_texts)
        elif s == "match":
            text = bench_match(args.docs)
        else:
            text, _ = bench_templates(args.data, args.dev_cap)
        text = f"{text}\n(run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()})\n"
        texts[s] = text
        print(text, flush=True)
        out.append(_marked(s, text))
    if args.results:
        old = args.results.read_text(encoding="utf-8") if args.results.is_file() else ""
        if old and all(_marker(s, "begin") in old for s in sections):
            new = old  # splice: only the sections run now are replaced, the rest stays
            for s, text in texts.items():
                head, rest = new.split(_marker(s, "begin"), 1)
                _, tail = rest.split(_marker(s, "end"), 1)
                new = head + _marked(s, text) + tail
            args.results.write_text(new)
        else:
            args.results.write_text("\n".join(out))
        print(f"wrote {args.results}")
    return 0


def _marker(section: str, edge: str) -> str:
    return f"<!-- prboost_answers:{section}:{edge} -->"


def _marked(section: str, text: str) -> str:
    return f"{_marker(section, 'begin')}\n{text}{_marker(section, 'end')}"
