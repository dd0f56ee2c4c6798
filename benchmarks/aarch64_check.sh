#!/usr/bin/env bash
# edgeprune on aarch64, emulated: an arm64 Debian root under qemu-user-static, `.[device]`
# installed in it, and `edgeprune info` / `evaluate` / `profile` of .tflite models crafted on x86.
#
#   sudo benchmarks/aarch64_check.sh [STAGE...]   (stages: root install models run table; default all;
#                                                  run = x86 + arm, which can also be given alone)
#
# ROOT (default arm64-root beside the checkout) holds the arm64 Debian bookworm root; WORK
# (default arm64-work beside it) the x86-made models and both sides' results. Needs root (mmdebstrap, chroot,
# binfmt_misc), apt access to Debian and pip access to PyPI (the host's /etc/pip.conf is copied in).
# IMAGES (default 200) test images (and the transfer set) for the prediction comparison;
# EVAL_IMAGES (default 100) for `edgeprune evaluate` on each side: emulation is slow.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-$(dirname "$REPO")/arm64-root}
WORK=${WORK:-$(dirname "$REPO")/arm64-work}
IMAGES=${IMAGES:-200}
EVAL_IMAGES=${EVAL_IMAGES:-100}
EPOCHS=${EPOCHS:-3}
DATA=${DATA:-$REPO/../shared/data/cifar10_sample.npz}
PY=${PY:-python}
STAGES=("$@"); [ ${#STAGES[@]} -eq 0 ] && STAGES=(root install models run table)
has() { local s; for s in "${STAGES[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
log() { echo "[aarch64_check $(date -u +%H:%M:%S)] $*" >&2; }
in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/opt/ep/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"; }

if has root; then
  command -v mmdebstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq qemu-user-static mmdebstrap binfmt-support; }
  mountpoint -q /proc/sys/fs/binfmt_misc || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 || true
  if [ ! -x "$ROOT/usr/bin/python3" ]; then
    log "mmdebstrap --arch=arm64 bookworm -> $ROOT"
    mmdebstrap --arch=arm64 --variant=apt \
      --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$ROOT"
  fi
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
  log "root ready: $(in_root /usr/bin/uname -m) $(in_root /usr/bin/python3 --version)"
fi

EP() { "$PY" -m edgeprune "$@"; }   # x86 side: the worktree's edgeprune (PYTHONPATH=$REPO)
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} TF_CPP_MIN_LOG_LEVEL=3

if has install; then
  log "install .[device] into $ROOT/opt/ep (pip inside the arm64 root, emulated)"
  rm -rf "$ROOT/opt/edgeprune-src"; mkdir -p "$ROOT/opt/edgeprune-src"
  (cd "$REPO" && git ls-files -z | xargs -0 cp --parents -t "$ROOT/opt/edgeprune-src")
  in_root /usr/bin/python3 -m venv /opt/ep
  in_root /opt/ep/bin/pip install -q --disable-pip-version-check "/opt/edgeprune-src[device]"
  in_root /opt/ep/bin/pip freeze | grep -iE "numpy|litert|openvino|edgeprune" > "$WORK/aarch64_versions.txt" || true
fi

if has models; then
  mkdir -p "$WORK/models" "$WORK/sets"
  log "train a small ResNet-8 on the CIFAR-10 sample ($EPOCHS epochs) and convert it on x86"
  [ -f "$WORK/models/base.h5" ] || EP train resnet8 -d "npz:$DATA" --epochs "$EPOCHS" -o "$WORK/models/base.h5" -q --force
  for p in fp32 fp16 dynamic int8; do
    EP convert "$WORK/models/base.h5" --to tflite -p "$p" -d "npz:$DATA" -o "$WORK/models/m_$p.tflite" \
       --calibration 200 --verify 200 --min-agreement 0 --force -q
  done
  log "a transfer set: FGSM eps 8/255 crafted on the Keras model, $IMAGES test images"
  EP attack "$WORK/models/base.h5" -a fgsm -d "npz:$DATA" --limit "$IMAGES" -o "$WORK/sets/fgsm" --force -q
fi

if has run || has x86; then
  MODELS=(m_fp32.tflite m_fp16.tflite m_dynamic.tflite m_int8.tflite)
  mkdir -p "$WORK/x86"
  log "x86: predictions, evaluate"
  "$PY" "$REPO/benchmarks/aarch64_predict.py" --data "$DATA" --limit "$IMAGES" --sets "$WORK/sets/fgsm.npz" \
     -o "$WORK/x86/predictions.npz" "${MODELS[@]/#/$WORK/models/}"
  EP evaluate "${MODELS[@]/#/$WORK/models/}" -d "npz:$DATA" --limit "$EVAL_IMAGES" -q -o "$WORK/x86/evaluate" > /dev/null
fi

if has run || has arm; then
  # No /proc or /sys in the root: bound from the x86 host they describe x86 CPUs, and LiteRT's
  # cpuinfo (XNNPACK) then segfaults under qemu-aarch64 (tried). Without them cpuinfo says it
  # cannot parse the CPU lists and LiteRT runs on; what ran is recorded in the table.
  DATA_NAME=$(basename "$DATA")   # the transfer set records its dataset by this file name
  if [ ! -f "$ROOT/work/predictions.npz" ] || [ "$WORK/models/m_fp32.tflite" -nt "$ROOT/work/predictions.npz" ]; then
    rm -rf "$ROOT/work"; mkdir -p "$ROOT/work" "$WORK/aarch64"; cp -a "$WORK/models" "$WORK/sets" "$ROOT/work/"
    rm -f "$ROOT/work/models/base.h5"   # device side: .tflite only, no TensorFlow there
    cp "$REPO/benchmarks/aarch64_predict.py" "$ROOT/work/"
    log "aarch64 (emulated): info, predictions"
    T0=$(date +%s)
    in_root /bin/sh -c 'uname -m; cd /work && for m in models/*.tflite; do edgeprune info "$m"; done' > "$WORK/aarch64/info.txt" 2>&1
    in_root /bin/sh -c "cd /work && python aarch64_predict.py --data $DATA_NAME --limit $IMAGES --sets sets/fgsm.npz \
       -o predictions.npz models/m_fp32.tflite models/m_fp16.tflite models/m_dynamic.tflite models/m_int8.tflite"
    echo "{\"predict_s\": $(($(date +%s) - T0))}" > "$ROOT/work/predict_seconds.json"
  fi
  [ -f "$ROOT/work/$DATA_NAME" ] || cp "$DATA" "$ROOT/work/$DATA_NAME"
  log "aarch64 (emulated): evaluate ($EVAL_IMAGES clean images), profile, openvino import"
  T1=$(date +%s)
  in_root /bin/sh -c "cd /work && edgeprune evaluate models/m_fp32.tflite models/m_fp16.tflite models/m_dynamic.tflite models/m_int8.tflite -d npz:$DATA_NAME --limit $EVAL_IMAGES -q -o /work/evaluate" > /dev/null
  T2=$(date +%s)
  in_root /bin/sh -c 'cd /work && edgeprune profile models/m_int8.tflite models/m_fp32.tflite --batch 1 --runs 5 --min-time 0 --warmup 1 --warmup-time 0 -q -o /work/profile.json' > /dev/null
  in_root /bin/sh -c 'cd /work && python -c "import openvino as ov; print(\"openvino\", ov.get_version(), ov.Core().available_devices)"' >> "$WORK/aarch64/info.txt" 2>&1 || true
  mkdir -p "$WORK/aarch64"
  cp "$ROOT/work/predictions.npz" "$ROOT/work/evaluate".* "$ROOT/work/profile".* "$WORK/aarch64/"
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); d['evaluate_s']=int(sys.argv[2]); d['evaluate_images']=int(sys.argv[3]); print(json.dumps(d))" \
     "$ROOT/work/predict_seconds.json" "$((T2 - T1))" "$EVAL_IMAGES" > "$WORK/aarch64/seconds.json"
fi

if has table; then
  "$PY" "$REPO/benchmarks/aarch64_predict.py" --table "$WORK" --out "$REPO/benchmarks/results/aarch64" \
     --command "sudo IMAGES=$IMAGES EVAL_IMAGES=$EVAL_IMAGES EPOCHS=$EPOCHS benchmarks/aarch64_check.sh"
fi
log "done"
