"""What the CPU offers for int8 inference, read from /proc/cpuinfo (no TensorFlow)."""

from __future__ import annotations

# The instructions that multiply-add int8 in one step and make int8 inference pay the most:
# x86 VNNI (AVX512 and AVX) and AMX, Arm's dot product and int8 matrix multiply.
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags (x86 `flags`, Arm `Features`), or None where unknown."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def int8_note(flags: frozenset[str] | None = None) -> str | None:
    """One line telling that this CPU lacks int8 dot-product instructions, or None when it
    has them (or its flags are unknown)."""
    flags = cpu_flags() if flags is None else flags
    if not flags or any(f in flags for f in INT8_DOT_PRODUCT_FLAGS):
        return None
    return (f"note: this CPU has no int8 dot-product instructions "
            f"({', '.join(INT8_DOT_PRODUCT_FLAGS)}); int8 still runs, on its "
            f"{'AVX2' if 'avx2' in flags else 'plain SIMD'} kernels, and gains less than on "
            f"CPUs that have them (README, Precision).")
