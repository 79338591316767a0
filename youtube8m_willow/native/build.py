"""Compiles the project's kernels against the installed TensorFlow.

    python -m youtube8m_willow.native.build

``make`` runs it after installing the requirements. Each ``<name>.cc``
becomes ``lib<name>.so`` beside it (rebuilt when the source or TensorFlow is
newer). A failed build is reported and leaves the kernel out; training then
takes TensorFlow's own path (more memory; the same numbers but for the
clipping norm's last digits).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = ("row_block_adam",)
# No contracted multiply-adds: TensorFlow's own kernels round each product
# and sum apart, and the kernels here must give their bits. On x86, AVX, as
# TensorFlow's own kernels are built (its x86 builds require it).
FLAGS = ["-std=c++17", "-shared", "-fPIC", "-O3", "-DNDEBUG", "-ffp-contract=off", "-w"]
X86_FLAGS = ["-mavx"]


def library_path(name: str) -> Path:
    """``lib<name>.so``: not ``<name>.so``, which Python would import as the
    package's module ``<name>``."""
    return HERE / f"lib{name}.so"


def compile_command(name: str) -> list[str]:
    import tensorflow as tf

    compiler = shutil.which("c++") or shutil.which("g++") or "c++"
    flags = FLAGS + (X86_FLAGS if platform.machine().lower() in ("x86_64", "amd64") else [])
    return [compiler, *flags, str(HERE / f"{name}.cc"), "-o", str(library_path(name)),
            *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def up_to_date(name: str) -> bool:
    import tensorflow as tf

    library = library_path(name)
    if not library.exists():
        return False
    newest_input = max((HERE / f"{name}.cc").stat().st_mtime,
                       Path(tf.__file__).parent.stat().st_mtime)
    return library.stat().st_mtime >= newest_input


def build(name: str) -> bool:
    """Compiles one kernel; False (with the compiler's last lines printed) on failure."""
    if up_to_date(name):
        return True
    result = subprocess.run(compile_command(name), capture_output=True, text=True)
    if result.returncode != 0:
        print(f"could not build the {name} kernel ({result.returncode}); training takes "
              f"TensorFlow's path instead:\n{result.stderr[-2000:]}", file=sys.stderr)
        return False
    print(f"built {library_path(name)}")
    return True


def main() -> int:
    return 0 if all([build(name) for name in KERNELS]) else 1


if __name__ == "__main__":
    sys.exit(main())
