"""PTLoss distillation on WRENCH sets: hard CE, KD, label smoothing and PTLoss students (issue 11).

Usage: python -m bench ptloss [--sets youtube,trec,semeval,chemprot] [--seeds 5] [--layers 2,3]
       [--layer-pick spread|first] [--pool 600] [--epochs 4] [--folds 3] [--candidates 64]
       [--max-length 48] [--data-dir DIR] [--json OUT] [--render-only]
       python -m bench ptloss --predict-only [--requests 200]   (the predict endpoint's latency)

Per set: pool = a seeded subsample of train with its gold labels (wrench-chemprot has no train: its
valid split is cut into pool and dev), dev = valid (≤ 300 rows), test = test.
Teacher: all-MiniLM-L6-v2 (6 layers) fine-tuned with CE, cross-fitted (``--folds`` folds): every
pool row is labeled by the fold teacher that did not train on it; dev and test get the mean of the
fold teachers (none trained on them). ε (K × 5) is chosen on dev by the proxy teacher's distance to
the one-hot dev labels among ``--candidates`` samples with ε = 0 included; never on test.
Students: L layers of the same encoder (``--layer-pick spread``: evenly spaced ending with the
last block, 6 → 2 keeps blocks 3 and 6; ``first``: blocks 1..L), a fresh head, trained on the
pool with the teacher's soft labels (KD, PTLoss) or its argmax (CE, label smoothing 0.1); the
same seed gives every loss the same head init and batch order (paired seeds). Metric: accuracy.
Speed: examples/s of teacher and students on this CPU, one thread, batch 32, test texts.
Relation sets are entity-marked (``[E1] head [/E1] ... [E2] tail [/E2]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SETS = {
    "youtube": "wrench-youtube",
    "trec": "wrench-trec",
    "semeval": "wrench-semeval",
    "chemprot": "wrench-chemprot",
}
LOSS_NAMES = {"ce": "hard CE", "kd": "KD", "ls": "label smoothing", "ptloss": "PTLoss"}
RESULTS = Path(__file__).parent / "results"
MD = Path(__file__).parent / "RESULTS-ptloss.md"


def _limit_threads() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)


def _texts(ds) -> list[str]:
    from models.prboost.learners import mark_entities

    if ds.entities is None:
        return list(ds.texts)
    return [mark_entities(t, h, tl) for t, (h, tl) in zip(ds.texts, ds.entities)]


def load_set(
    data_dir: Path, name: str, pool: int, dev: int = 300, max_test: int = 600, seed: int = 0
) -> dict:
    """{"pool", "dev", "test"}: (texts, labels) each, plus label names."""
    from models.data import load_wrench

    folder = data_dir / SETS[name]
    rng = np.random.default_rng(seed)
    valid, _ = load_wrench(folder, "valid")
    test, _ = load_wrench(folder, "test")
    v_texts, v_y = _texts(valid), valid.labels
    if (folder / "train.json").exists():
        train, _ = load_wrench(folder, "train")
        t_texts, t_y = _texts(train), train.labels
        d_idx = rng.permutation(len(v_texts))[:dev]
        dev_part = ([v_texts[i] for i in d_idx], v_y[d_idx])
    else:  # chemprot: valid -> pool + dev
        order = rng.permutation(len(v_texts))
        d_idx, p_idx = order[:dev], order[dev:]
        dev_part = ([v_texts[i] for i in d_idx], v_y[d_idx])
        t_texts, t_y = [v_texts[i] for i in p_idx], v_y[p_idx]
    p_idx = rng.permutation(len(t_texts))[:pool]
    te_texts, te_y = _texts(test), test.labels
    te_idx = np.sort(rng.permutation(len(te_texts))[:max_test])
    return {
        "pool": ([t_texts[i] for i in p_idx], t_y[p_idx]),
        "dev": dev_part,
        "test": ([te_texts[i] for i in te_idx], te_y[te_idx]),
        "label_names": valid.label_names,
        "sizes": {"pool": len(p_idx), "train_total": len(t_texts), "dev": len(dev_part[0])},
    }


def teacher_labels(data: dict, enc: dict, args, cache: Path, log) -> dict:
    """Cross-fitted teacher probabilities on pool / dev / test (cached on disk)."""
    from models.ptloss import cross_fit
    from models.ptloss.distill import TrainConfig, predict_proba, train
    from models.ptloss.students import build_classifier

    if cache.exists():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    K = len(data["label_names"])
    y_pool = data["pool"][1]
    n_dev = len(data["dev"][0])
    extra = enc["dev_test"]

    def fit_predict(tr, held, progress):
        model, _ = build_classifier(n_classes=K, seed=0)
        cfg = TrainConfig(
            epochs=args.teacher_epochs, lr=args.lr, batch_size=args.batch_size, seed=0
        )
        train(
            model, enc["pool"].subset(tr), loss="ce", hard=y_pool[tr], config=cfg, progress=progress
        )
        return predict_proba(model, enc["pool"].subset(held)), predict_proba(model, extra)

    t0 = time.perf_counter()
    cf = cross_fit(len(y_pool), fit_predict, n_folds=args.folds, seed=0, progress=log)
    out = {
        "pool": cf.oof,
        "dev": cf.extra[:n_dev],
        "test": cf.extra[n_dev:],
        "seconds": np.asarray(time.perf_counter() - t0),
    }
    np.savez(cache, **out)
    return out


def run_set(name: str, args, log) -> dict:
    import torch

    from models.ptloss import select_eps
    from models.ptloss.distill import TrainConfig, examples_per_second, predict_proba, train
    from models.ptloss.students import build_classifier, encode, n_parameters

    data = load_set(Path(args.data_dir), name, args.pool, args.dev, args.test)
    K = len(data["label_names"])
    tag = f"{name}-p{args.pool}-d{args.dev}-t{args.test}-L{args.max_length}"
    _, tok = build_classifier(n_classes=K, n_layers=1)
    enc_path = RESULTS / "cache" / f"ptloss-enc-{tag}.pt"
    if enc_path.exists():
        enc = torch.load(enc_path, weights_only=False)
    else:
        enc = {
            "pool": encode(tok, data["pool"][0], args.max_length),
            "dev": encode(tok, data["dev"][0], args.max_length),
            "test": encode(tok, data["test"][0], args.max_length),
            "dev_test": encode(tok, data["dev"][0] + data["test"][0], args.max_length),
        }
        torch.save(enc, enc_path)
    t_path = RESULTS / "cache" / f"ptloss-teacher-{tag}-f{args.folds}-e{args.teacher_epochs}.npz"
    teacher = teacher_labels(data, enc, args, t_path, log)
    y_pool, y_dev, y_test = data["pool"][1], data["dev"][1], data["test"][1]

    def acc(p, y):
        return float((np.asarray(p).argmax(1) == y).mean())

    sel = select_eps(teacher["dev"], y_dev, order=5, n_candidates=args.candidates, seed=0)
    log(
        0.0,
        f"{name}: eps index {sel.index} (0 = KD), dev mse {sel.mse[sel.index]:.4f} "
        f"vs KD {sel.mse[0]:.4f}",
    )
    res = {
        "sizes": data["sizes"] | {"test": len(y_test), "classes": K},
        "teacher": {
            "dev": acc(teacher["dev"], y_dev),
            "test": acc(teacher["test"], y_test),
            "pool_oof": acc(teacher["pool"], y_pool),
            "pool_top_prob": float(teacher["pool"].max(1).mean()),
            "seconds": float(teacher["seconds"]),
        },
        "selection": sel.summary(),
        "students": {},
        "speed": {},
    }
    speed_enc = enc["test"].subset(np.arange(min(256, len(y_test))))
    full, _ = build_classifier(n_classes=K, seed=0)
    res["speed"]["teacher"] = {
        "layers": int(full.config.num_hidden_layers),
        "params": n_parameters(full),
        "examples_per_s": examples_per_second(full, speed_enc, repeats=2),
    }
    for L in args.layers:
        rows: dict[str, dict[str, list[float]]] = {}
        for seed in range(args.seeds):
            for loss in ("ce", "kd", "ls", "ptloss"):
                model, _ = build_classifier(
                    n_classes=K, n_layers=L, layer_pick=args.layer_pick, seed=seed
                )
                cfg = TrainConfig(
                    epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=seed
                )
                t0 = time.perf_counter()
                train(
                    model,
                    enc["pool"],
                    loss=loss,
                    teacher=teacher["pool"],
                    eps=sel.eps if loss == "ptloss" else None,
                    config=cfg,
                )
                r = rows.setdefault(loss, {"dev": [], "test": [], "train_s": []})
                r["dev"].append(acc(predict_proba(model, enc["dev"]), y_dev))
                r["test"].append(acc(predict_proba(model, enc["test"]), y_test))
                r["train_s"].append(time.perf_counter() - t0)
                log(
                    0.0,
                    f"{name} L={L} seed={seed} {loss}: dev {r['dev'][-1]:.3f} "
                    f"test {r['test'][-1]:.3f} ({r['train_s'][-1]:.0f}s)",
                )
            if seed == 0:
                res["speed"][f"student_L{L}"] = {
                    "layers": L,
                    "params": n_parameters(model),
                    "examples_per_s": examples_per_second(model, speed_enc, repeats=2),
                }
        res["students"][f"L{L}"] = rows
    return res


# --------------------------------------------------------------------------- predict endpoint
def predict_latency(args, log) -> dict:
    """p50/p95 of ``POST /api/v1/projects/{id}/predict`` with 32 short texts (trec test
    questions) through Django's test client, in process, on a fresh SQLite test database.

    Wall time and the process's CPU time per request are both kept: on this shared machine
    (load ~10 on 2 cores) wall time is mostly waiting for a core.
    The serving student has the benchmark students' architecture (all-MiniLM-L6-v2, 2 spread
    layers, max length 48) with an untrained head: latency depends on the architecture only.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.frugal.settings")
    os.environ.pop("DATABASE_URL", None)  # SQLite: nothing shared is touched
    import tempfile

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_databases, setup_test_environment

    from apps.distill import services
    from apps.distill.models import DistillRun, Student
    from apps.jobs.artifacts import save_artifact
    from apps.projects.models import Membership, Project, Role
    from models.data import load_wrench
    from models.ptloss.students import build_classifier

    tmp = tempfile.mkdtemp(prefix="bench-ptloss-")
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp},
        },
    }
    settings.FRUGAL_MODEL_CACHE_DIR = Path(tmp) / "cache"
    settings.ALLOWED_HOSTS = ["*"]
    setup_test_environment()
    setup_databases(verbosity=0, interactive=False)
    test, _ = load_wrench(Path(args.data_dir) / SETS["trec"], "test")
    names = test.label_names
    user = get_user_model().objects.create_user("bench")
    project = Project.objects.create(
        name="bench", task_type="text_classification", labels=names, created_by=user
    )
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    model, tok = build_classifier(
        n_classes=len(names), label_names=names, n_layers=2, layer_pick="spread"
    )
    blob = services.student_tar(model, tok, meta={"max_length": 48})
    artifact = save_artifact(
        project=project, kind="distill_student", name="s.tar", fileobj_or_bytes=blob
    )
    run = DistillRun.objects.create(project=project)
    Student.objects.create(
        project=project, run=run, loss="kd", artifact=artifact, max_length=48, is_serving=True
    )
    client = Client()
    client.force_login(user)
    url = f"/api/v1/projects/{project.pk}/predict"
    batches = [test.texts[i : i + 32] for i in range(0, len(test.texts) - 31, 32)]
    t0 = time.perf_counter()
    first = client.post(url, {"texts": batches[0]}, content_type="application/json")
    cold_ms = 1000 * (time.perf_counter() - t0)
    assert first.status_code == 200, first.content
    times, cpu = [], []
    for i in range(args.requests):
        t0, c0 = time.perf_counter(), time.process_time()
        r = client.post(url, {"texts": batches[i % len(batches)]}, content_type="application/json")
        times.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0))
        assert r.status_code == 200, (r.status_code, r.content[:300])
    log(0.0, f"predict: p50 {np.percentile(times, 50):.1f} ms, p95 {np.percentile(times, 95):.1f}")
    return {
        "batch": 32,
        "requests": args.requests,
        "student": "all-MiniLM-L6-v2, 2 spread layers, max length 48",
        "cold_ms": cold_ms,
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "cpu_p50_ms": float(np.percentile(cpu, 50)),
        "cpu_p95_ms": float(np.percentile(cpu, 95)),
        "load": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


# --------------------------------------------------------------------------- rendering
def benchmark_rows(data: dict) -> str:
    """The rows BENCHMARKS.md carries (printed by ``--render-only``, pasted, never typed)."""
    out = [
        "| set | student | KD test | PTLoss test | PTLoss − KD (paired) | verdict | student vs "
        "teacher ex/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in data["sets"].items():
        sp = r["speed"]
        for L, rows in r["students"].items():
            m, s = paired(rows)
            ratio = sp.get(f"student_{L}", {}).get("examples_per_s", 0) / max(
                1e-9, sp["teacher"]["examples_per_s"]
            )
            out.append(
                f"| {name} | {L} ({len(rows['kd']['test'])} seeds) | {_ms(rows['kd']['test'])} "
                f"| {_ms(rows['ptloss']['test'])} | {m:+.1f} ± {s:.1f} | {verdict(m, s)} "
                f"| {ratio:.1f}× |"
            )
    if data.get("predict"):
        p = data["predict"]
        out.append(
            f"\npredict endpoint, 32 texts: wall p95 {p['p95_ms']:.1f} ms (load {p['load']:.1f}), "
            f"CPU time p95 {p['cpu_p95_ms']:.1f} ms"
        )
    return "\n".join(out)


def _ms(xs: list[float]) -> str:
    a = 100 * np.asarray(xs)
    return f"{a.mean():.1f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.1f}"


def paired(rows: dict, split: str = "test") -> tuple[float, float]:
    """Mean and std (points) of the per-seed difference PTLoss − KD."""
    d = 100 * (np.asarray(rows["ptloss"][split]) - np.asarray(rows["kd"][split]))
    return float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0


def verdict(mean: float, std: float) -> str:
    if mean > std:
        return "PTLoss > KD"
    if mean < -std:
        return "PTLoss < KD"
    return "within spread"


def render(data: dict) -> str:
    meta = data["meta"]
    out = [
        "# PTLoss distillation (bench/ptloss.py)",
        "",
        f"Machine: {meta['machine']}, one torch thread. Date: {meta['date']}. "
        f"Command: `{meta['command']}`.",
        "",
        f"Pool ≤ {meta['pool']} train rows (subsampled, seeded; chemprot: its valid split cut into "
        f"pool and dev), dev ≤ {meta['dev']} valid rows, test ≤ {meta['test']} rows (seeded "
        "subsample: CPU time). Teacher: all-MiniLM-L6-v2 "
        f"fine-tuned with CE, {meta['folds']}-fold cross-fitted ({meta['teacher_epochs']} epochs); "
        f"students: L layers of the same encoder (layer pick `{meta.get('layer_pick', 'first')}`; "
        "`spread` = evenly spaced ending with the last block, 6→2 keeps blocks 3 and 6), "
        f"{meta['epochs']} epochs, lr {meta['lr']}, max length "
        f"{meta['max_length']} tokens, batch {meta['batch_size']}; paired seeds (same head init "
        "and batch order for every loss). ε (K × 5) chosen on dev among "
        f"{meta['candidates']} candidates (ε = 0 included) by the proxy teacher's squared distance "
        "to the one-hot dev labels; nothing is chosen on test. CE and label smoothing train on the "
        "teacher's argmax. Accuracy in %, mean ± std over seeds.",
        "",
        "## Test accuracy per loss",
        "",
        "| set | student | hard CE | KD | label smoothing | PTLoss | PTLoss − KD (paired) "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in data["sets"].items():
        for L, rows in r["students"].items():
            m, s = paired(rows)
            cells = " | ".join(_ms(rows[k]["test"]) for k in ("ce", "kd", "ls", "ptloss"))
            n = len(rows["kd"]["test"])
            out.append(
                f"| {name} | {L} ({n} seeds) | {cells} | {m:+.1f} ± {s:.1f} | {verdict(m, s)} |"
            )
    out += [
        "",
        "## Dev accuracy per loss",
        "",
        "| set | student | hard CE | KD | label smoothing | PTLoss | PTLoss − KD (paired) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in data["sets"].items():
        for L, rows in r["students"].items():
            m, s = paired(rows, "dev")
            cells = " | ".join(_ms(rows[k]["dev"]) for k in ("ce", "kd", "ls", "ptloss"))
            out.append(f"| {name} | {L} | {cells} | {m:+.1f} ± {s:.1f} |")
    out += [
        "",
        "## Teacher, ε selection and speed",
        "",
        "| set | pool / dev / test | teacher dev / test | teacher top prob on pool (cross-fitted) "
        "| chosen ε | dev MSE proxy vs KD | dev TV proxy vs KD | teacher ex/s | L2 ex/s "
        "| L3 ex/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in data["sets"].items():
        t, s, sp, z = r["teacher"], r["selection"], r["speed"], r["sizes"]
        chosen = "0 (KD)" if s["is_kd"] else f"#{s['index']}"
        speeds = [
            f"{sp[k]['examples_per_s']:.0f}" if k in sp else "–"
            for k in ("teacher", "student_L2", "student_L3")
        ]
        out.append(
            f"| {name} | {z['pool']} / {z['dev']} / {z['test']} | {100 * t['dev']:.1f} / "
            f"{100 * t['test']:.1f} | {t['pool_top_prob']:.3f} | {chosen} | {s['mse']:.4f} vs "
            f"{s['mse_kd']:.4f} | {s['tv']:.4f} vs {s['tv_kd']:.4f} | {' | '.join(speeds)} |"
        )
    out += ["", "Speed-up of students over the teacher (examples/s ratio):", ""]
    for name, r in data["sets"].items():
        sp = r["speed"]
        base = sp["teacher"]["examples_per_s"]
        ratios = ", ".join(
            f"{k[len('student_') :]} {sp[k]['examples_per_s'] / base:.1f}×"
            for k in sp
            if k.startswith("student_")
        )
        out.append(f"- {name}: {ratios}")
    if data.get("predict"):
        p = data["predict"]
        out += [
            "",
            "## Predict endpoint",
            "",
            f"`POST /api/v1/projects/{{id}}/predict`, {p['batch']} short texts per request, "
            f"{p['requests']} requests through Django's test client (in process, model cached), "
            f"student {p['student']}, one torch thread: p50 {p['p50_ms']:.1f} ms, **p95 "
            f"{p['p95_ms']:.1f} ms** (target ≤ 50 ms); the first request, which loads the model "
            f"into the process cache, took {p['cold_ms']:.0f} ms. CPU time per request (what an "
            f"idle core would take): p50 {p['cpu_p50_ms']:.1f} ms, p95 {p['cpu_p95_ms']:.1f} ms. "
            f"Measured {p['date']} with load average {p['load']:.1f} on the 2 shared cores. "
            "The serving student's Linear layers are int8 (dynamic quantization, on by default "
            "on CPU).",
        ]
    for name, r in data["sets"].items():
        if r.get("command"):
            out.append(f"\n{name} was run by a second process: `{r['command']}`.")
    if data.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench ptloss")
    ap.add_argument("--sets", default="youtube,trec,semeval,chemprot")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--layers", default="2,3")
    ap.add_argument("--layer-pick", default="spread", choices=["first", "spread"])
    ap.add_argument("--pool", type=int, default=600)
    ap.add_argument("--dev", type=int, default=300)
    ap.add_argument("--test", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--data-dir", default=os.environ.get("FRUGAL_DATA_DIR", "/work/shared/data"))
    ap.add_argument("--json", default=str(RESULTS / "ptloss.json"))
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument(
        "--also", action="append", default=[], help="with --render-only: add the sets of more JSONs"
    )
    ap.add_argument("--note", action="append", default=[], help="with --render-only: a note")
    ap.add_argument("--predict-only", action="store_true", help="only the endpoint latency")
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args(argv)
    args.layers = [int(x) for x in args.layers.split(",")]
    path = Path(args.json)
    predict_path = path.with_name(path.stem + "-predict.json")

    def merged(data: dict) -> dict:
        if predict_path.exists():
            data = {**data, "predict": json.loads(predict_path.read_text())}
        return data

    if args.render_only:
        data = json.loads(path.read_text())
        for extra in args.also:  # sets run by another process (their own command line)
            more = json.loads(Path(extra).read_text())
            for name, entry in more["sets"].items():
                data["sets"].setdefault(name, {**entry, "command": more["meta"]["command"]})
        data["notes"] = args.note
        MD.write_text(render(merged(data)))
        print(MD.read_text())
        print("\nRows for BENCHMARKS.md:\n" + benchmark_rows(merged(data)))
        return 0
    _limit_threads()
    if not Path(args.data_dir).is_dir():
        print(f"data folder {args.data_dir} not found (set FRUGAL_DATA_DIR or --data-dir)")
        return 1
    (RESULTS / "cache").mkdir(parents=True, exist_ok=True)

    def log(frac: float, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.predict_only:
        predict_path.write_text(json.dumps(predict_latency(args, log), indent=1))
        if path.exists():
            MD.write_text(render(merged(json.loads(path.read_text()))))
        print(predict_path.read_text())
        return 0

    data = json.loads(path.read_text()) if path.exists() else {"sets": {}}
    data["meta"] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores (shared)",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m bench ptloss " + " ".join(argv),
        "pool": args.pool,
        "dev": args.dev,
        "test": args.test,
        "folds": args.folds,
        "teacher_epochs": args.teacher_epochs,
        "epochs": args.epochs,
        "layer_pick": args.layer_pick,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "seeds": args.seeds,
        "candidates": args.candidates,
    }
    for name in args.sets.split(","):
        new = run_set(name, args, log)
        old = data["sets"].get(name)
        if old and old["teacher"] == new["teacher"]:  # same cached teacher: add these students
            old["students"].update(new["students"])
            old["speed"].update(new["speed"])
            new = old
        data["sets"][name] = new
        path.write_text(json.dumps(data, indent=1))  # after each set: a partial run still renders
        MD.write_text(render(merged(data)))
    print(MD.read_text())
    return 0
