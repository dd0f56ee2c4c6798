#!/usr/bin/env bash
# edgeprune on aarch64, emulated: an arm64 Debian root under qemu-user-static, `.[device]`
# installed in it, and `edgeprune info` / `evaluate` / `profile` of .tflite models crafted on x86.
#
#   sudo benchmarks/aarch64_check.sh [STAGE...]      (stages: root install models run table; default all)
#
# ROOT (default /work/arm64-root) holds the arm64 Debian bookworm root; WORK (default
# /work/arm64-work) the x86-made models and both sides' results. Needs root (mmdebstrap, chroot,
# binfmt_misc), apt access to Debian and pip access to PyPI (the host's /etc/pip.conf is copied in).
# IMAGES (default 200) test images per evaluation: emulation is slow (≈ 20 images/s for int8).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-/work/arm64-root}
WORK=${WORK:-/work/arm64-work}
IMAGES=${IMAGES:-200}
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
