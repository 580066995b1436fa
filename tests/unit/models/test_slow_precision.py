"""The bf16 warning follows the CPU's flags as Linux lists them."""

from __future__ import annotations

from anomalib_folder_ext.models.precision import cpu_flags, slow_precision


def test_cpu_flags_are_read_from_x86_and_arm_cpuinfo_and_unknown_elsewhere(tmp_path):
    x86, arm = tmp_path / "x86", tmp_path / "arm"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t: fpu avx2 fma\n")
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16\nCPU implementer\t: 0x41\n")
    assert cpu_flags(x86) == frozenset({"fpu", "avx2", "fma"})
    assert cpu_flags(arm) >= {"bf16"}
    assert cpu_flags(tmp_path / "absent") is None
    assert slow_precision("bf16-mixed", "cpu", cpu_flags(x86)).startswith("warning: precision bf16-mixed")
    assert slow_precision("bf16-true", "cpu", cpu_flags(arm)) is None
    assert slow_precision("32-true", "cpu", cpu_flags(x86)) is None
    assert slow_precision("bf16-mixed", "cpu", cpu_flags(tmp_path / "absent")) is None  # not known: no claim
