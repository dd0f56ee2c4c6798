"""Benchmark: `edgeprune evaluate --autoattack standard` against torchattacks' AutoAttack.

Issue 18's comparison in one run, on one model and the same images:

1. a ResNet-8 trained by the CLI on the CIFAR-10 sample (`edgeprune train`, cached);
2. the test images `evaluate --limit N` attacks (class-stratified), saved with the model's
   logits (softmax stripped, as edgeprune attacks them);
3. the logits model exported to ONNX by tf2onnx 1.16.1 (onnx 1.16.2, protobuf < 5) in a
   side virtualenv (`--tf2onnx-python`), loaded in torch by onnx2torch (`--torch-python`) and
   checked against the Keras logits (max |difference| recorded, must be < 1e-4);
4. per eps: torchattacks 3.5.1 `AutoAttack(norm="Linf", version="standard")` (APGD-CE, APGD-T,
   FAB-T, Square) with torch on `--threads` threads, timed; and the whole
   `edgeprune evaluate MODEL --autoattack standard --eps E` command, timed, with TF on the
   same number of threads;
5. a table (robust accuracy and wall time per side, edgeprune's per-stage times) in
   OUT.md and OUT.json, with the command, host, threads and the load average before and
   after every timed part (above 2.5 the file says the host was busy).

Every part writes its own file under --work and is skipped when that file exists, so an
interrupted run resumes (`--force edgeprune|torchattacks|all` re-times those attacks). Side
virtualenvs:

    python -m venv .venv-torch && .venv-torch/bin/pip install torch torchattacks==3.5.1 \\
        onnx2torch onnx "numpy<2"
    python -m venv .venv-tf2onnx && .venv-tf2onnx/bin/pip install tensorflow-cpu==2.15.1 \\
        tf2onnx==1.16.1 onnx==1.16.2 "protobuf<5" "numpy<2"

    python benchmarks/autoattack_reference.py --data ../shared/data/cifar10_sample.npz --work /tmp/aa-ref
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

BUSY_LOAD = 2.5

# Run by --torch-python: the ONNX model in torch (NHWC inside, NCHW outside for torchattacks).
TORCH_SCRIPT = r'''
import json, sys, time, os
import numpy as np
import torch
import onnx
from onnx2torch import convert

work, threads = sys.argv[1], int(sys.argv[2])
mode = sys.argv[3]
torch.set_num_threads(threads)
torch.manual_seed(0)


class NCHW(torch.nn.Module):
    """torchattacks (Square's windows) expects NCHW; the exported model takes NHWC."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 2, 3, 1))


model = NCHW(convert(onnx.load(os.path.join(work, "model.onnx")))).eval()
data = np.load(os.path.join(work, "images.npz"))
x = torch.from_numpy(np.ascontiguousarray(data["x"].transpose(0, 3, 1, 2)))
y = torch.from_numpy(data["y"].astype(np.int64))
if mode == "check":
    with torch.no_grad():
        logits = model(x).numpy()
    diff = float(np.abs(logits - data["logits"]).max())
    agree = float(np.mean(logits.argmax(1) == data["logits"].argmax(1)))
    print(json.dumps({"max_abs_logit_diff": diff, "argmax_agreement": agree}))
    sys.exit(0)

import torchattacks

eps = float(mode)
attack = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
started = time.perf_counter()
x_adv = attack(x, y)
seconds = time.perf_counter() - started
with torch.no_grad():
    clean = (model(x).argmax(1) == y).float().mean().item()
    robust = (model(x_adv).argmax(1) == y).float().mean().item()
    linf = (x_adv - x).abs().amax(dim=(1, 2, 3)).max().item()
print(json.dumps({"clean_accuracy": clean, "robust_accuracy": robust, "seconds": seconds,
                  "max_linf": linf, "torch": torch.__version__, "torchattacks": torchattacks.__version__,
                  "threads": torch.get_num_threads()}))
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 sample .npz (Keras layout)")
    parser.add_argument("--work", required=True, help="folder for the model, images, ONNX and per-part results")
    parser.add_argument("--epochs", type=int, default=10, help="ResNet-8 training epochs")
    parser.add_argument("--limit", type=int, default=200, help="test images attacked (class-stratified)")
    parser.add_argument("--eps", default="1/255,2/255", help="L-inf bounds, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and TensorFlow")
    parser.add_argument("--omp-wait-policy", choices=["auto", "active", "passive"], default="auto",
                        help="torch's OpenMP threads: spinning (active) is fastest on a quiet host and "
                             "pathological on a busy one (measured: one forward 2.3 s wall with spinning, "
                             "0.36 s passive, at load 15); auto = passive when the load exceeds --threads")
    parser.add_argument("--torch-python", default=".venv-torch/bin/python")
    parser.add_argument("--tf2onnx-python", default=".venv-tf2onnx/bin/python")
    parser.add_argument("--only", choices=["all", "torchattacks", "edgeprune", "edgeprune-10-steps"],
                        default="all", help="run one part only (to run parts side by side); the table "
                                            "is written once every part of every eps is cached")
    parser.add_argument("--note", default="", help="a sentence on how this run went, added to OUT.md")
    parser.add_argument("--out", default="benchmarks/results/autoattack_reference", help="output stem")
    parser.add_argument("--force", choices=["none", "edgeprune", "torchattacks", "all"], default="none",
                        help="re-time these sides' attacks (model, images and ONNX are always kept)")
    return parser.parse_args(argv)


def run(cmd: list[str], env: dict | None = None) -> str:
    print("$", shlex.join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, env=env)
    return done.stdout


def thread_env(threads: int, wait_policy: str) -> dict:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[name] = str(threads)
    if wait_policy == "auto":
        wait_policy = "passive" if os.getloadavg()[0] > threads else "active"
    env["OMP_WAIT_POLICY"] = wait_policy.upper()
    return env


def timed(label: str, fn):
    """(result, seconds, load before, load after) of fn(); the load is os.getloadavg()[0]."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    after = os.getloadavg()[0]
    print(f"{label}: {seconds:.1f} s (load {before:.2f} -> {after:.2f})", flush=True)
    return result, seconds, round(before, 2), round(after, 2)


def cached_json(path: Path, make, force: bool = False) -> dict:
    if path.exists() and not force:
        return json.loads(path.read_text())
    result = make()
    path.write_text(json.dumps(result, indent=2))
    return result


def prepare(args: argparse.Namespace, work: Path) -> dict:
    """Model, images + Keras logits, ONNX export and its check (each cached)."""
    import numpy as np

    model_path = work / "resnet8.h5"
    if not model_path.exists():
        run([sys.executable, "-m", "edgeprune", "train", "resnet8", "--dataset", f"npz:{args.data}",
             "--epochs", str(args.epochs), "-o", str(model_path)])
    images = work / "images.npz"
    saved = work / "logits_savedmodel"
    if not images.exists() or not saved.exists():
        import tensorflow as tf

        from edgeprune.attacks.runner import logits_function
        from edgeprune.modelio import load_keras_model
        from edgeprune.robustness import _load_split

        _, x, y = _load_split(f"npz:{args.data}", [model_path], args.limit)  # what evaluate attacks
        model = load_keras_model(model_path)
        model_fn, _ = logits_function(model, probe=x)
        logits = np.asarray(model_fn(tf.constant(x)), np.float32)
        logits_model = tf.keras.Model(model.inputs, model_fn(model.inputs[0]))
        logits_model.save(str(saved), save_format="tf")
        np.savez(images, x=x.astype(np.float32), y=y.astype(np.int64), logits=logits)
    onnx_path = work / "model.onnx"
    if not onnx_path.exists():
        run([args.tf2onnx_python, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--opset", "17",
             "--output", str(onnx_path)])
    script = work / "torch_side.py"
    script.write_text(TORCH_SCRIPT)
    return cached_json(work / "onnx_check.json", lambda: json.loads(
        run([args.torch_python, str(script), str(work), str(args.threads), "check"]).strip().splitlines()[-1]))


def eps_value(text: str) -> float:
    return float(Fraction(text.strip()))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    check = prepare(args, work)
    if check["max_abs_logit_diff"] > 1e-4:
        raise SystemExit(f"ONNX -> torch logits differ from Keras by {check['max_abs_logit_diff']:.3g}")
    env = thread_env(args.threads, args.omp_wait_policy)
    script = work / "torch_side.py"
    rows = []
    for eps_text in args.eps.split(","):
        eps = eps_value(eps_text)
        tag = eps_text.strip().replace("/", "_")

        def reference(eps: float = eps) -> dict:
            out, seconds, before, after = timed(f"torchattacks eps {eps:.5g}", lambda: run(
                [args.torch_python, str(script), str(work), str(args.threads), repr(eps)], env=env))
            result = json.loads(out.strip().splitlines()[-1])
            return {**result, "wall_seconds": round(seconds, 2), "load_before": before, "load_after": after,
                    "omp_wait_policy": env["OMP_WAIT_POLICY"]}

        def edgeprune_side(eps_text: str = eps_text, tag: str = tag, version: str = "standard") -> dict:
            stem = work / f"edgeprune_{tag}" if version == "standard" else work / f"edgeprune_{version}_{tag}"
            cmd = ["edgeprune", "evaluate", str(work / "resnet8.h5"), "--autoattack", version,
                   "--eps", eps_text.strip(), "--dataset", f"npz:{args.data}", "--limit", str(args.limit),
                   "-o", str(stem), "-q", "--force"]
            _, seconds, before, after = timed(f"edgeprune {version} eps {eps_text}", lambda: run(
                [sys.executable, "-m", "edgeprune", *cmd[1:]], env=env))
            report = json.loads(stem.with_suffix(".json").read_text())
            model = report["models"][0]
            return {"command": shlex.join(cmd), "version": version, "clean_accuracy": model["clean_accuracy"],
                    "robust_accuracy": model["robust_accuracy"], "wall_seconds": round(seconds, 2),
                    "seconds": round(sum(s["seconds"] for s in model["stages"]), 2),
                    "stages": {s["name"]: {"seconds": s["seconds"], "attacked": s["attacked"],
                                           "fooled": s["fooled"], "robust_accuracy": s["robust_accuracy"],
                                           **({"forward": s["forward"]} if "forward" in s else {})}
                               for s in model["stages"]},
                    "load_before": before, "load_after": after}

        redo_ref = args.force in ("torchattacks", "all")
        redo_ours = args.force in ("edgeprune", "all")
        parts = {
            "torchattacks": (work / f"torchattacks_{tag}.json", reference, redo_ref),
            "edgeprune": (work / f"edgeprune_{tag}.timing.json", edgeprune_side, redo_ours),
            "edgeprune-10-steps": (work / f"edgeprune_{tag}.torchattacks_version.json",
                                   lambda eps_text=eps_text, tag=tag: edgeprune_side(eps_text, tag, "torchattacks"),
                                   redo_ours),
        }
        for name, (path, make, redo) in parts.items():
            if args.only in ("all", name):
                cached_json(path, make, redo)
        if not all(path.exists() for path, _, _ in parts.values()):
            print(f"eps {eps_text}: parts still to run: "
                  f"{', '.join(n for n, (p, _, _) in parts.items() if not p.exists())}")
            continue
        ref, ours, same_work = (json.loads(path.read_text()) for path, _, _ in parts.values())
        rows.append({"eps": eps_text.strip(), "torchattacks": ref, "edgeprune": ours,
                     "edgeprune_torchattacks_steps": same_work})
    if len(rows) == len(args.eps.split(",")):
        write_results(args, check, rows)


def write_results(args: argparse.Namespace, check: dict, rows: list[dict]) -> None:
    loads = [r[side][k] for r in rows for side in ("torchattacks", "edgeprune", "edgeprune_torchattacks_steps")
             for k in ("load_before", "load_after")]
    busy = max(loads) > BUSY_LOAD
    host = {"machine": platform.machine(), "processor": _cpu_name(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    command = "python benchmarks/autoattack_reference.py " + shlex.join(
        ["--data", args.data, "--work", args.work, "--limit", str(args.limit), "--eps", args.eps,
         "--threads", str(args.threads)])
    payload = {"command": command, "host": host, "threads": args.threads, "images": args.limit,
               "onnx_check": check, "busy_host": busy, "note": args.note, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# AutoAttack (standard, L-inf): edgeprune vs torchattacks 3.5.1",
        "",
        f"ResNet-8 trained by `edgeprune train` ({args.epochs} epochs on the CIFAR-10 sample), {args.limit} "
        "class-stratified test images (those `evaluate --limit` attacks). Reference: the logits model "
        "exported by tf2onnx 1.16.1 (opset 17), loaded by onnx2torch (max |logit difference| vs Keras "
        f"{check['max_abs_logit_diff']:.2g}, argmax agreement {check['argmax_agreement']:.1%}), attacked by "
        f"`torchattacks.AutoAttack(norm='Linf', version='standard', seed=0)` with torch on {args.threads} "
        f"threads, OMP_WAIT_POLICY={rows[0]['torchattacks'].get('omp_wait_policy', 'unset')} (wall: the whole process, import and ONNX conversion included; attack: the attack call). "
        "edgeprune: the whole `edgeprune evaluate --autoattack standard` command (import, loading, checks, "
        "report).",
        "",
        "Not the same work: torchattacks' `standard` leaves APGD, APGD-T and FAB at their class default of "
        "**10 steps** (Croce & Hein's standard, which edgeprune runs, is 100), so its gradient stages do a tenth "
        "of edgeprune's; both run 9 target classes and Square with 5000 queries. The like-for-like columns "
        "run the whole `edgeprune evaluate --autoattack torchattacks` command, the version that does "
        "torchattacks' work (10-step APGD/APGD-T/FAB-T, Square 5000), and its wall time over the reference's.",
        "",
        "| eps | clean | torchattacks robust | wall / attack (s) | edgeprune robust | wall (s) | "
        "stages (s): APGD-CE / APGD-T / FAB-T / Square | `--autoattack torchattacks`: robust, wall (stages) (s) | "
        "like-for-like wall ratio (edgeprune / torchattacks) | load before → after (ref; ours; like-for-like) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        ref, ours, same = r["torchattacks"], r["edgeprune"], r["edgeprune_torchattacks_steps"]
        stages, same_stages = (" / ".join(f"{side['stages'][s]['seconds']:.1f}" for s in ("apgd-ce", "apgd-t", "fab-t", "square"))
                               for side in (ours, same))
        left = ours["stages"]["fab-t"]["attacked"]
        lines.append(
            f"| {r['eps']} | {ours['clean_accuracy']:.1%} | {ref['robust_accuracy']:.1%} | "
            f"{ref['wall_seconds']:.1f} / {ref['seconds']:.1f} | {ours['robust_accuracy']:.1%} | "
            f"{ours['wall_seconds']:.1f} | {stages} ({left} points left after APGD) | "
            f"{same['robust_accuracy']:.1%}, {same['wall_seconds']:.1f} ({same_stages}) | "
            f"{same['wall_seconds'] / ref['wall_seconds']:.2f}x | {ref['load_before']:.2f} → "
            f"{ref['load_after']:.2f}; {ours['load_before']:.2f} → {ours['load_after']:.2f}; "
            f"{same['load_before']:.2f} → {same['load_after']:.2f} |")
    lines += ["", f"Host: {host['processor']} ({host['cpus']} CPUs, {host['machine']}), Python {host['python']}.",
              f"Command: `{command}`", ""]
    if args.note:
        lines += [args.note, ""]
    if busy:
        lines += [f"**The host was busy** (load average above {BUSY_LOAD} during a timed part: other jobs "
                  "shared the two cores), so both wall times are inflated and their ratio is noisy; "
                  "re-run the command on a quiet host for the definitive figures.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
