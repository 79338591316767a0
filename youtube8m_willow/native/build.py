"""Compiles the project's kernels against the installed TensorFlow.

    python -m youtube8m_willow.native.build [name ...]

``make`` runs it after installing the requirements. Each ``<name>.cc``
becomes ``lib<name>.so`` beside it, stamped with its source's digest
(rebuilt when the source changes, when TensorFlow is newer, or, for a
kernel tuned to the CPU, on another CPU). A failed build is
reported and leaves the kernel out; the layers and the optimizer then take
TensorFlow's own path (more memory; the same numbers to float32 rounding).
"""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
X86 = platform.machine().lower() in ("x86_64", "amd64")
# No contracted multiply-adds: TensorFlow's own kernels round each product
# and sum apart, and row_block_adam must give their bits (-march=native
# allows FMA instructions; this keeps them out of its arithmetic).
FLAGS = ["-std=c++17", "-shared", "-fPIC", "-O3", "-DNDEBUG", "-ffp-contract=off", "-w"]
# Each kernel's own flags on x86: this CPU's whole instruction set (AVX-512
# where it has it), so each library is stamped with the CPU it was built
# for. softmax_pool: its selects and float64 sums run about 1.6x faster
# than with AVX2; vlad_descriptor, frame_streams and dequantize_frames: their
# row loops; moe_mixture: its exponentials and interleaved copies;
# row_block_adam: TF1's Adam with AVX-512's lanes where the CPU has them,
# twice AVX's, for its divisions and square roots (with AVX alone
# they held it below the memory's rate), and the same bits as TensorFlow's
# own AVX kernel (no contracted multiply-adds; IEEE divisions and square
# roots round alike at any width), its square roots vectorized without errno.
X86_FLAGS = {"row_block_adam": ["-march=native", "-fno-math-errno"],
             "softmax_pool": ["-march=native"], "vlad_descriptor": ["-march=native"],
             "frame_streams": ["-march=native"], "dequantize_frames": ["-march=native"],
             "moe_mixture": ["-march=native"]}
KERNELS = tuple(X86_FLAGS)


def library_path(name: str) -> Path:
    """``lib<name>.so``: not ``<name>.so``, which Python would import as the
    package's module ``<name>``."""
    return HERE / f"lib{name}.so"


def tuned_to_cpu(name: str) -> bool:
    return X86 and "-march=native" in X86_FLAGS[name]


def cpu_signature() -> str:
    """A digest of this CPU's model and instruction-set flags (Linux's
    ``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        described = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags")]
        text = "\n".join(sorted(set(described)))
    except OSError:
        text = platform.processor()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stamp_path(name: str) -> Path:
    return HERE / f"lib{name}.so.cpu"


def built_for_this_cpu(name: str) -> bool:
    """False for a kernel tuned to another CPU (its instructions may be
    missing here); True for one built for any (off x86, where none is tuned)."""
    if not tuned_to_cpu(name):
        return True
    stamp = stamp_path(name)
    return stamp.exists() and stamp.read_text().strip() == cpu_signature()


def compile_command(name: str) -> list[str]:
    import tensorflow as tf

    compiler = shutil.which("c++") or shutil.which("g++") or "c++"
    flags = FLAGS + (X86_FLAGS[name] if X86 else [])
    return [compiler, *flags, str(HERE / f"{name}.cc"), "-o", str(library_path(name)),
            *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def source_stamp_path(name: str) -> Path:
    return HERE / f"lib{name}.so.source"


def source_digest(name: str) -> str | None:
    """A digest of ``<name>.cc``; None where the source is not shipped."""
    try:
        return hashlib.sha256((HERE / f"{name}.cc").read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def built_from_current_source(name: str) -> bool:
    """Whether ``lib<name>.so`` was compiled from ``<name>.cc`` as it is now
    (its digest, stamped by ``build``; True where the source is not
    shipped): a library of an older source may lack what the Python side
    asks of its op. A digest, not the files' times, which a checkout or a
    copy changes without changing the source."""
    digest = source_digest(name)
    stamp = source_stamp_path(name)
    return digest is None or (stamp.exists() and stamp.read_text().strip() == digest)


def up_to_date(name: str) -> bool:
    """Built for this CPU from the current source, after the installed
    TensorFlow (found without importing it: ``make`` asks on every run)."""
    library = library_path(name)
    if (not library.exists() or not built_for_this_cpu(name)
            or not built_from_current_source(name)):
        return False
    tensorflow = Path(importlib.util.find_spec("tensorflow").origin).parent
    return library.stat().st_mtime >= tensorflow.stat().st_mtime


def build(name: str) -> bool:
    """Compiles one kernel; False (with the compiler's last lines printed) on failure."""
    if up_to_date(name):
        return True
    stamp_path(name).unlink(missing_ok=True)
    source_stamp_path(name).unlink(missing_ok=True)
    result = subprocess.run(compile_command(name), capture_output=True, text=True)
    if result.returncode != 0:
        print(f"could not build the {name} kernel ({result.returncode}); TensorFlow's own "
              f"path runs instead:\n{result.stderr[-2000:]}", file=sys.stderr)
        return False
    if tuned_to_cpu(name):
        stamp_path(name).write_text(cpu_signature() + "\n")
    digest = source_digest(name)
    if digest is not None:
        source_stamp_path(name).write_text(digest + "\n")
    print(f"built {library_path(name)}")
    return True


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(KERNELS))
    if unknown:
        print(f"unknown kernel {', '.join(unknown)}; valid: {', '.join(KERNELS)}",
              file=sys.stderr)
        return 2
    return 0 if all([build(name) for name in names or KERNELS]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
