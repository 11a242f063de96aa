"""Render bench/RESULTS-prboost.md, its per-round plots and the BENCHMARKS.md PRBoost quality rows
from the JSON that ``python -m bench prboost --json`` writes (no typed numbers).

Usage: python -m bench prboost_render [JSON ...] [--results bench/RESULTS-prboost.md]
       [--benchmarks BENCHMARKS.md] [--plots bench/prboost-plots]

JSON files default to bench/results/prboost-*.json (one per data set; their ``sets`` are merged).
BENCHMARKS.md: the text between ``<!-- prboost-quality:begin -->`` and
``<!-- prboost-quality:end -->`` is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from bench.prboost import ROW_NAMES

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
REPORTING = ("wrench-youtube", "wrench-sms", "wrench-trec", "wrench-semeval")
ALPHA_EPS = 0.01  # an α this small is a member the ensemble all but ignores
BEGIN, END = "<!-- prboost-quality:begin -->", "<!-- prboost-quality:end -->"


# --------------------------------------------------------------------------- numbers
def _mean(runs: list[dict], key: str = "metric") -> float:
    return float(np.mean([r[key] for r in runs])) * 100


def _pm(runs: list[dict] | None, key: str = "metric") -> str:
    if not runs:
        return "—"
    v = 100 * np.asarray([r[key] for r in runs], dtype=float)
    return f"{v.mean():.1f} ± {v.std():.1f}" if v.size > 1 else f"{v.mean():.1f}"


def summarize(name: str, st: dict) -> dict:
    """Every number the tables and targets need for one set."""
    rows = st["rows"]
    m = {r: _mean(runs) for r, runs in rows.items()}
    out: dict = {"name": name, "means": m}
    base = max(m.get("1", -np.inf), m.get("3", -np.inf))
    if "6" in m and np.isfinite(base) and ("4" in m or "5" in m):
        out["half_gap"] = (base + m["6"]) / 2
        best = max(m.get("4", -np.inf), m.get("5", -np.inf))
        out["best"] = best
        out["closes_half"] = bool(best >= out["half_gap"])
    if "4" in m and "7" in m:
        d = [100 * (a["metric"] - b["metric"]) for a, b in zip(rows["4"], rows["7"])]
        out["rules_gain"] = float(np.mean(d))
        out["rules_gain_std"] = float(np.std(d))
    if "4" in m and "1" in m:
        out["row4_ge_row1"] = bool(m["4"] >= m["1"] - 1e-9)
    for r in ("4", "5", "7"):
        if r not in rows:
            continue
        runs = rows[r]
        alphas = [h["alpha"] for run in runs for h in run["rounds"][1:]]  # rounds after 0
        first_dev = np.mean([run["rounds"][0]["ensemble_dev"] for run in runs])
        last_dev = np.mean([run["rounds"][-1]["ensemble_dev"] for run in runs])
        first_test = np.mean([run["rounds"][0]["ensemble_test"] for run in runs])
        last_test = np.mean([run["rounds"][-1]["ensemble_test"] for run in runs])
        corr = [run["precision_corr"] for run in runs if run.get("precision_corr") is not None]
        real = [run["mean_real_precision"] for run in runs if run.get("mean_real_precision")]
        out[f"loop{r}"] = {
            "alpha_pos": float(np.mean([a > ALPHA_EPS for a in alphas])) if alphas else np.nan,
            "dev": (100 * first_dev, 100 * last_dev),
            "test": (100 * first_test, 100 * last_test),
            "reviewed": float(np.mean([run["reviewed"] for run in runs])),
            "accepted": float(np.mean([run["accepted"] for run in runs])),
            "s_round": float(np.mean([run["round_seconds"] for run in runs])),
            "finalize_s": float(np.mean([run["finalize_seconds"] for run in runs])),
            "corr": float(np.mean(corr)) if corr else float("nan"),
            "real_precision": float(np.mean(real)) if real else float("nan"),
            "filled": float(np.mean([h["n_candidates"] for run in runs for h in run["rounds"]])),
        }
    return out


# --------------------------------------------------------------------------- plot
def plot_set(name: str, st: dict, path: Path) -> bool:
    """Ensemble dev / test accuracy and α per round (mean over seeds) for rows 4, 5, 7."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = {"4": "tab:blue", "5": "tab:green", "7": "tab:gray"}
    for r in ("4", "5", "7"):
        runs = st["rows"].get(r)
        if not runs:
            continue
        n = min(len(run["rounds"]) for run in runs)
        x = np.arange(n)
        dev = 100 * np.mean([[h["ensemble_dev"] for h in run["rounds"][:n]] for run in runs], 0)
        test = 100 * np.mean([[h["ensemble_test"] for h in run["rounds"][:n]] for run in runs], 0)
        alpha = np.mean([[h["alpha"] for h in run["rounds"][:n]] for run in runs], 0)
        label = f"{r} {ROW_NAMES[int(r)]}"
        ax1.plot(x, dev, "--", color=colors[r], label=f"{label}: dev (cross-fitted)")
        ax1.plot(x, test, "-", color=colors[r], label=f"{label}: test")
        ax2.plot(x, alpha, "o-", color=colors[r], label=label)
    ax1.set_xlabel("round")
    ax1.set_ylabel("ensemble metric (%)")
    ax1.legend(fontsize=7)
    ax2.axhline(0, color="black", lw=0.5)
    ax2.set_xlabel("round")
    ax2.set_ylabel("member α")
    ax2.legend(fontsize=7)
    fig.suptitle(f"{name}: PRBoost ensemble over rounds (mean over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- markdown
def _short(name: str) -> str:
    return name.removeprefix("wrench-")


def main_table(summaries: list[dict], sets: dict) -> list[str]:
    rows = [str(r) for r in ROW_NAMES]
    head = "| set | " + " | ".join(f"{r} {ROW_NAMES[int(r)]}" for r in rows)
    lines = [
        head + " | 4 − 7 | ½-gap mark |",
        "|---|" + "---|" * (len(rows) + 2),
    ]
    for s in summaries:
        st = sets[s["name"]]["rows"]
        cells = []
        most = max((len(runs) for runs in st.values()), default=0)
        for r in rows:
            cell = _pm(st.get(r))
            if st.get(r) and len(st[r]) < most:
                cell += f" ({len(st[r])} seed{'s' if len(st[r]) > 1 else ''})"
            if r in ("4", "5") and st.get(r) and _mean(st[r]) >= s.get("half_gap", np.inf):
                cell = f"**{cell}** ✓"
            cells.append(cell)
        gain = f"{s['rules_gain']:+.1f} ± {s['rules_gain_std']:.1f}" if "rules_gain" in s else "—"
        mark = f"{s['half_gap']:.1f}" if "half_gap" in s else "—"
        metric = "spam F1" if s["name"].endswith("sms") else "acc"
        lines.append(
            f"| {_short(s['name'])} ({metric}) | " + " | ".join(cells) + f" | {gain} | {mark} |"
        )
    return lines


def targets(summaries: list[dict]) -> list[str]:
    rep = [s for s in summaries if s["name"] in REPORTING]
    out = []
    gains = [s["rules_gain"] for s in rep if "rules_gain" in s]
    if gains:
        each = ", ".join(
            f"{_short(s['name'])} {s['rules_gain']:+.1f}" for s in rep if "rules_gain" in s
        )
        ok = np.mean(gains) >= 2 and all(g > 0 for g in gains)
        out.append(
            f"- Row 4 − row 7 ≥ 2 points on average and > 0 on each: mean "
            f"{np.mean(gains):+.1f} ({each}) over {len(gains)} set(s): "
            f"**{'met' if ok else 'not met'}**."
        )
    ge = [s for s in rep if "row4_ge_row1" in s]
    if ge:
        each = ", ".join(
            f"{_short(s['name'])} {s['means']['4']:.1f} vs {s['means']['1']:.1f}" for s in ge
        )
        ok = all(s["row4_ge_row1"] for s in ge)
        out.append(f"- Row 4 ≥ row 1 on each: {each}: **{'met' if ok else 'not met'}**.")
    half = [s for s in rep if "closes_half" in s]
    if half:
        n = sum(s["closes_half"] for s in half)
        each = ", ".join(
            f"{_short(s['name'])} {s['best']:.1f} {'≥' if s['closes_half'] else '<'} "
            f"{s['half_gap']:.1f}"
            for s in half
        )
        out.append(
            f"- The better PRBoost row closes ≥ half the gap from max(row 1, row 3) to row 6 on "
            f"≥ 3 of 4 sets: {n} of {len(half)} ({each}): **{'met' if n >= 3 else 'not met'}**."
        )
    alive = [s for s in rep if "loop4" in s]
    if alive:
        each = ", ".join(
            f"{_short(s['name'])} {100 * s['loop4']['alpha_pos']:.0f}% α > 0.01, ensemble dev "
            f"{s['loop4']['dev'][0]:.1f} → {s['loop4']['dev'][1]:.1f}, test "
            f"{s['loop4']['test'][0]:.1f} → {s['loop4']['test'][1]:.1f}"
            for s in alive
        )
        ok = all(
            s["loop4"]["alpha_pos"] > 0.5 and s["loop4"]["dev"][1] > s["loop4"]["dev"][0]
            for s in alive
        )
        out.append(
            f"- Boosting alive (row 4, rounds after 0): {each}: **{'met' if ok else 'not met'}**."
        )
    return out


def detail_table(summaries: list[dict]) -> list[str]:
    lines = [
        "| set | row | reviewed | accepted | candidates/round | mean real precision of shown "
        "| corr(estimated, real precision) | rounds with α > 0.01 after 0 | ensemble dev round 0 → "
        "last | ensemble test round 0 → last | s/round | finalize s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        for r in ("4", "5", "7"):
            d = s.get(f"loop{r}")
            if d is None:
                continue
            lines.append(
                f"| {_short(s['name'])} | {r} | {d['reviewed']:.0f} | {d['accepted']:.1f} | "
                f"{d['filled']:.1f} | {d['real_precision']:.2f} | {d['corr']:.2f} | "
                f"{100 * d['alpha_pos']:.0f}% | {d['dev'][0]:.1f} → {d['dev'][1]:.1f} | "
                f"{d['test'][0]:.1f} → {d['test'][1]:.1f} | {d['s_round']:.1f} | "
                f"{d['finalize_s']:.1f} |"
            )
    return lines


def render(sets: dict, metas: list[dict], plots: dict[str, str], notes: str) -> str:
    summaries = [summarize(n, sets[n]) for n in sorted(sets, key=_order)]
    lines = ["# PRBoost quality benchmark (issues 3, 9)", ""]
    lines += ["Commands (one data set per process):", ""]
    for meta in metas:
        lines.append(f"    .venv/bin/python -m {meta['command'].removeprefix('python -m ')}")
    lines += [""]
    m0 = metas[0]
    seeds = sorted({s for m in metas for s in m["seeds"]})
    lines.append(
        f"Machine: {m0['machine']}, Python {m0['python']}; runs dated "
        f"{', '.join(sorted({m['date'] for m in metas}))}. Seeds {seeds}; {m0['rounds']} rounds × "
        f"at most {m0['per_round']} reviewed candidates; proposer `{m0['proposer']}`; end-model "
        f"features `{m0['features']}` "
        + "("
        + ", ".join(
            f"{_short(n)}: {sets[n]['features']}"
            + (
                " — dev 5-fold CV "
                + ", ".join(f"{k} {100 * v:.1f}" for k, v in sets[n]["features_cv"].items())
                if sets[n].get("features_cv")
                else ""
            )
            for n in sorted(sets, key=_order)
        )
        + "). LoopConfig overrides: "
        + (json.dumps(m0["config"]) if m0["config"] else "none (the defaults)")
        + "."
    )
    lines += ["", *main_table(summaries, sets), ""]
    lines += ["Targets (issue 9), computed from the JSON:", ""]
    lines += targets(summaries)
    lines += ["", "Per-loop detail (means over seeds):", "", *detail_table(summaries), ""]
    if plots:
        lines += ["Per-round plots (ensemble dev/test metric and member α, mean over seeds):", ""]
        lines += [f"- {_short(n)}: [{Path(p).name}]({p})" for n, p in plots.items()]
        lines += [""]
    if notes:
        lines += [notes.rstrip(), ""]
    return "\n".join(lines)


def benchmarks_block(sets: dict, metas: list[dict]) -> str:
    summaries = [summarize(n, sets[n]) for n in sorted(sets, key=_order)]
    seeds = sorted({s for m in metas for s in m["seeds"]})
    lines = [
        BEGIN,
        f"Quality (`bench prboost`, proposer `{metas[0]['proposer']}`, seeds {seeds}, test set, "
        "mean ± std; rendered from the JSON by `bench prboost_render`; row 6 trains on the gold "
        "pool + dev, row 7 is the same loop with an annotator that rejects every rule; the new "
        "defaults were chosen on dev data, never on test (the first build's self-training "
        "settings were chosen on seed 0 of these test sets and are kept), see "
        "`bench/RESULTS-prboost.md`):",
        "",
        *main_table(summaries, sets),
        "",
        *targets(summaries),
        END,
    ]
    return "\n".join(lines)


def _order(name: str) -> tuple[int, str]:
    return (REPORTING.index(name) if name in REPORTING else len(REPORTING), name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench prboost_render", description=__doc__)
    parser.add_argument("json", nargs="*")
    parser.add_argument("--results", default=str(BENCH / "RESULTS-prboost.md"))
    parser.add_argument("--benchmarks", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--plots", default=str(BENCH / "prboost-plots"))
    parser.add_argument(
        "--notes", default=str(BENCH / "prboost-notes.md"), help="prose appended (no numbers)"
    )
    args = parser.parse_args(argv)
    files = [Path(p) for p in args.json] or sorted((BENCH / "results").glob("prboost-*.json"))
    if not files:
        print("no JSON given and none in bench/results/prboost-*.json")
        return 2
    sets: dict = {}
    metas: list[dict] = []
    for f in files:
        d = json.loads(f.read_text(encoding="utf-8"))
        metas.append(d["meta"])
        for name, st in d["sets"].items():  # several files may hold rows (or seeds) of one set
            into = sets.setdefault(name, {**st, "rows": {}})
            for row, runs in st["rows"].items():
                into["rows"].setdefault(row, []).extend(runs)
    results = Path(args.results)
    plots = {}
    for name in sorted(sets, key=_order):
        png = Path(args.plots) / f"{_short(name)}.png"
        if plot_set(name, sets[name], png):
            plots[name] = os.path.relpath(png.resolve(), results.resolve().parent)
    notes_path = Path(args.notes)
    notes = notes_path.read_text(encoding="utf-8") if notes_path.is_file() else ""
    results.write_text(render(sets, metas, plots, notes), encoding="utf-8")
    bm = Path(args.benchmarks)
    if bm.is_file():
        text = bm.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            bm.write_text(head + benchmarks_block(sets, metas) + tail, encoding="utf-8")
        else:
            print(f"{bm}: no {BEGIN} … {END} markers; PRBoost rows not written")
    print(f"wrote {results}" + (f" and {len(plots)} plot(s)" if plots else ""))
    return 0
