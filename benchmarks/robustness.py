"""Benchmark: PGD vs AutoAttack vs FMN curves on a base model and its TF-MOT pruned versions.

The second paper (Piras et al.) re-evaluates pruned models with AutoAttack and FMN
robustness curves and finds PGD-only evaluations overestimate robustness. This script
reproduces the measurement pipeline on a CPU budget: a zoo model trained on the CIFAR-10
sample, pruned with `edgeprune prune --method tfmot` at 90/95/99% (local vs LAMP), then per
model on N class-stratified test images: clean accuracy, PGD-10 and AutoAttack (`fast`) at
each eps, and one FMN run giving the robustness curve. Models are cached in --work, so a
re-run resumes.

    python benchmarks/robustness.py --data PATH/cifar10_sample.npz --work WORKDIR
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--work", required=True, help="folder for the trained and pruned models (cache)")
    parser.add_argument("--arch", default="resnet8")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=15, help="base training epochs")
    parser.add_argument("--finetune", type=int, default=3, help="pruning fine-tune epochs")
    parser.add_argument("--sparsities", default="0.9,0.95,0.99")
    parser.add_argument("--scopes", default="local,lamp")
    parser.add_argument("--limit", type=int, default=200, help="test images attacked")
    parser.add_argument("--eps", default="1/255,8/255", help="L-inf bounds for PGD-10 and AutoAttack")
    parser.add_argument("--version", default="fast", choices=["fast", "standard"])
    parser.add_argument("--fmn-steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/robustness",
                        help="output stem: STEM.json, STEM.md, STEM_curves.{png,csv,json}")
    return parser.parse_args(argv)


def run(cmd: list[str]) -> None:
    print("$", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np

    from edgeprune.attacks.autoattack import AutoAttackConfig, numpy_predict, run_autoattack
    from edgeprune.attacks.runner import AttackConfig, logits_function, run_attack
    from edgeprune.data import load_dataset
    from edgeprune.host import host_fingerprint
    from edgeprune.io import atomic_write_text, versions, write_json
    from edgeprune.modelio import load_keras_model
    from edgeprune.modelstats import model_stats
    from edgeprune.robustness import (curves_report, fmn_curve, parse_eps, plot_curves,
                                      curves_csv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    spec = f"npz:{args.data}"
    cli = str(Path(sys.executable).with_name("edgeprune"))
    started = time.perf_counter()

    base = work / f"{args.arch}_w{args.width:g}_e{args.epochs}.h5"
    if not base.exists():
        run([cli, "train", args.arch, "-d", spec, "--epochs", str(args.epochs), "--width", str(args.width),
             "--milestones", str(max(1, int(args.epochs * 2 / 3))), "--seed", str(args.seed), "-q", "-o",
             str(base)])
    models: list[tuple[str, Path, dict]] = [("base", base, {"scope": "-", "sparsity": 0.0})]
    for scope in args.scopes.split(","):
        for sparsity in (float(s) for s in args.sparsities.split(",")):
            path = work / f"{base.stem}_{scope}{sparsity * 100:g}.h5"
            if not path.exists():
                run([cli, "prune", str(base), "-m", "tfmot", "--sparsity", str(sparsity), "--scope", scope,
                     "--epochs", str(args.finetune), "-d", spec, "--seed", str(args.seed), "-q", "-o", str(path)])
            models.append((f"{scope} {sparsity:.0%}", path, {"scope": scope, "sparsity": sparsity}))

    dataset = load_dataset(spec, limit_test=args.limit, seed=args.seed)
    x, y = dataset.split("test")
    eps_values = [parse_eps(e) for e in args.eps.split(",")]
    rows, curves = [], []
    for label, path, meta in models:
        model = load_keras_model(path)
        model_fn, _ = logits_function(model, probe=x)
        stats = model_stats(model)
        worst_by_eps: dict[str, np.ndarray] = {}
        row = {"model": label, "file": path.name, **meta, "measured_sparsity": stats.get("sparsity"),
               "clean_accuracy": float(np.mean(numpy_predict(model_fn)(x).argmax(1) == y)), "eps": {}}
        for eps in eps_values:
            t0 = time.perf_counter()
            pgd = run_attack(model, x, y, AttackConfig.create("pgd", eps=eps, norm="linf", seed=args.seed,
                                                               params={"steps": 10}))
            t_pgd = time.perf_counter() - t0
            aa = run_autoattack(model_fn, x, y, AutoAttackConfig(eps=eps, version=args.version, seed=args.seed),
                                predict=numpy_predict(model_fn))
            # Robust accuracy reported = per-point minimum over every attack run (PGD included).
            worst = aa.robust & (pgd.adv_pred == y)
            worst_by_eps[f"{eps:.6g}"] = worst
            row["eps"][f"{eps:.6g}"] = {
                "pgd10": pgd.adversarial_accuracy, "pgd10_seconds": round(t_pgd, 2),
                "autoattack": aa.robust_accuracy, "autoattack_seconds": round(sum(s.seconds for s in aa.stages), 2),
                "stages": {s.name: s.robust_accuracy for s in aa.stages},
                "min_over_attacks": float(worst.mean()),
                "pgd_overestimate_points": 100 * (pgd.adversarial_accuracy - float(worst.mean())),
                "warnings": list(aa.warnings)}
            print(f"{label}: eps {eps:.4f} clean {row['clean_accuracy']:.3f} pgd10 {pgd.adversarial_accuracy:.3f} "
                  f"AA {aa.robust_accuracy:.3f}", flush=True)
        curve, _ = fmn_curve(model, x, y, label=label, norm="linf", steps=args.fmn_steps, tune=True)
        for eps, (key, cell) in zip(eps_values, row["eps"].items(), strict=True):
            # The reported robust accuracy: per point, the minimum over PGD, AutoAttack and FMN.
            survived = np.asarray(worst_by_eps[key]) & (curve.norms > eps)
            cell["min_over_attacks"] = float(survived.mean())
            cell["pgd_overestimate_points"] = 100 * (cell["pgd10"] - cell["min_over_attacks"])
            cell["aa_overestimate_points"] = 100 * (cell["autoattack"] - cell["min_over_attacks"])
        row["fmn_median_norm"] = curve.median_norm
        row["fmn_at_eps"] = {f"{e:.6g}": curve.accuracy(e) for e in eps_values}
        row["fmn_config"] = {k: curve.fmn[k] for k in ("alpha_init", "schedule")}
        row["fmn_seconds"] = round(curve.seconds, 1)
        curves.append(curve)
        rows.append(row)
        print(f"{label}: FMN median {curve.median_norm:.5f} ({curve.seconds:.0f} s)", flush=True)

    out = Path(args.out)
    # No machine paths in the committed report: the data and work folders become placeholders.
    placeholders = {args.data: f"PATH/{Path(args.data).name}", args.work: "WORKDIR"}
    command = "python benchmarks/robustness.py " + shlex.join(
        placeholders.get(a, a) for a in (argv if argv is not None else sys.argv[1:]))
    report = {"schema": "edgeprune.bench.robustness/1", "command": command, "host": host_fingerprint(),
              "versions": versions(), "dataset": {"name": dataset.name, "images": int(len(x))},
              "config": {k: v for k, v in vars(args).items() if k not in ("data", "work", "out")},
              "models": rows, "seconds": round(time.perf_counter() - started, 1)}
    write_json(out.with_suffix(".json"), report)
    # Standard-trained models lose everything within a few /255: plot up to 1.25 x the largest eps.
    grid = np.linspace(0.0, 1.25 * max(eps_values), 201)
    curve_report = curves_report(curves, dataset={"name": dataset.name, "images": int(len(x))},
                                 eps_report=eps_values, grid=grid)
    write_json(out.with_name(out.name + "_curves.json"), curve_report)
    atomic_write_text(out.with_name(out.name + "_curves.csv"), curves_csv(curve_report))
    plot_curves(curves, out.with_name(out.name + "_curves.png"), grid=grid, eps_marks=eps_values,
                title=f"{args.arch} on the CIFAR-10 sample: FMN curves ({len(x)} test images)")
    atomic_write_text(out.with_suffix(".md"), markdown(report, eps_values))
    print(f"-> {out}.md ({report['seconds']:.0f} s)")


def markdown(report: dict, eps_values: list[float]) -> str:
    lines = [f"Command: `{report['command']}`", "", f"Host: {json.dumps(report['host'])}", "",
             f"{report['dataset']['images']} class-stratified test images of {report['dataset']['name']}; "
             f"AutoAttack version `{report['config']['version']}`; FMN {report['config']['fmn_steps']} steps, "
             f"step size and schedule tuned per model on 32 images; total {report['seconds']:.0f} s.", "",
             "`min all`: a point counts as robust only if PGD-10, every AutoAttack stage and FMN (minimal "
             "norm > eps) all failed on it; `PGD over-est.` = PGD-10 accuracy - `min all`, in points.", ""]
    head = "| model | sparsity (measured) | clean |"
    sep = "|---|---:|---:|"
    for eps in eps_values:
        e = f"{eps * 255:.0f}/255"
        head += f" PGD-10 @{e} | AA @{e} | FMN @{e} | min all @{e} | PGD over-est. @{e} (pts) |"
        sep += "---:|---:|---:|---:|---:|"
    head += " FMN median norm (x255) |"
    sep += "---:|"
    lines += [head, sep]
    for r in report["models"]:
        cells = f"| {r['model']} | {r['measured_sparsity']:.3f} | {r['clean_accuracy']:.1%} |"
        for eps in eps_values:
            k = f"{eps:.6g}"
            c = r["eps"][k]
            cells += (f" {c['pgd10']:.1%} | {c['autoattack']:.1%} | {r['fmn_at_eps'][k]:.1%} | "
                      f"{c['min_over_attacks']:.1%} | {c['pgd_overestimate_points']:+.1f} |")
        cells += f" {r['fmn_median_norm'] * 255:.2f} |"
        lines.append(cells)
    lines += ["", "AutoAttack stages (robust accuracy after each):", ""]
    for r in report["models"]:
        for k, c in r["eps"].items():
            stages = ", ".join(f"{n} {a:.1%}" for n, a in c["stages"].items())
            lines.append(f"- {r['model']} @ eps {float(k) * 255:.0f}/255: {stages}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
