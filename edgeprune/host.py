"""Host fingerprint: what a latency figure depends on, read without TensorFlow."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from edgeprune.io import versions

# avx512_bf16 / amx_bf16 / avx512_fp16: what OpenVINO's default inference precision depends on.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "neon", "asimd", "asimddp", "sve", "i8mm", "bf16")


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _memory_bytes() -> int | None:
    meminfo = _read("/proc/meminfo")
    if meminfo:
        for line in meminfo.splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _physical_cores() -> int | None:
    """Distinct (package, core) pairs in sysfs topology: SMT siblings count once."""
    cores = set()
    for topology in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        package = _read(str(topology / "physical_package_id"))
        core = _read(str(topology / "core_id"))
        if core is not None:
            cores.add((package, core))
    return len(cores) or None


def host_fingerprint() -> dict:
    """CPU model, ISA flags that matter for inference, cores, memory, OS and stack versions."""
    info = _cpuinfo()
    model = info.get("model name") or info.get("Hardware") or info.get("Model") or platform.processor()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": model or "unknown",
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "affinity": affinity,
        "isa": sorted(flag for flag in ISA_FLAGS if flag in flags),
        "memory_bytes": _memory_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "versions": versions(),
    }
