"""The fork server (tests/forked.py) runs commands as ``python`` would: the
tests that start scripts through it rely on these."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import forked
from conftest import REPO

PYTHON = sys.executable


def test_a_script_gets_its_arguments_folder_environment_and_exit_code(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import os, sys\nprint(sys.argv, os.getcwd(), os.environ['ONLY_HERE'])\n"
                      "print('to stderr', file=sys.stderr)\nsys.exit(3)\n")
    result = forked.run([PYTHON, str(script), "a", "b"], capture_output=True, text=True,
                        cwd=tmp_path, env={**os.environ, "ONLY_HERE": "yes"})
    assert result.returncode == 3
    assert result.stdout == f"{[str(script), 'a', 'b']} {tmp_path} yes\n"
    assert result.stderr == "to stderr\n"
    assert "ONLY_HERE" not in os.environ


def test_code_and_modules_run_as_main():
    code = forked.run([PYTHON, "-c", "import sys; print(__name__, sys.argv)", "x"],
                      capture_output=True, text=True)
    assert (code.returncode, code.stdout) == (0, "__main__ ['-c', 'x']\n")
    module = forked.run([PYTHON, "-m", "youtube8m_willow.submission.vocabulary", "--help"],
                        capture_output=True, text=True, cwd=REPO)
    assert module.returncode == 0 and module.stdout.startswith("usage: python -m "), module


def test_an_uncaught_error_exits_1_with_its_traceback():
    result = forked.run([PYTHON, "-c", "raise ValueError('broken on purpose')"],
                        capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("ValueError: broken on purpose")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_a_signal_ends_it_as_it_ends_python(signum):
    """Killed by the signal (returncode -signum); SIGINT as python's
    KeyboardInterrupt, which ends the process by SIGINT."""
    process = forked.Popen([PYTHON, "-c", "import sys, time; print('up', flush=True); "
                            "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "up\n"
    process.send_signal(signum)
    assert process.wait(timeout=30) == -signum
    assert process.poll() == -signum


def test_tensorflow_is_imported_already_and_runs():
    result = forked.run([PYTHON, "-c", "import sys; assert 'tensorflow' in sys.modules; "
                         "import tensorflow as tf; print(int(tf.reduce_sum(tf.range(5))))"],
                        capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "10\n"), result.stderr[-2000:]


def test_an_import_time_variable_gets_a_real_process():
    """A Keras backend (read when Keras is imported) cannot be changed in a
    fork of a process that has imported it: such a command runs in a new one."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    process = forked.Popen([PYTHON, "-c", "import sys; print('keras' in sys.modules)"],
                           stdout=subprocess.PIPE, env=env)
    assert isinstance(process, subprocess.Popen)
    assert process.communicate(timeout=60)[0] == b"False\n"


def test_a_run_past_its_timeout_is_killed(tmp_path):
    marker = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        forked.run([PYTHON, "-c", f"import os, time; open({str(marker)!r}, 'w').write("
                    "str(os.getpid())); time.sleep(60)"], timeout=2)
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


NESTED = """
import os, socket, subprocess, sys
import forked as server  # the module of the server this child was forked from
if server._Nested.instance is not None:  # fork_nested: a caller gone before its request
    with socket.socket(socket.AF_UNIX) as dropped:
        dropped.connect("\\0" + server._Nested.instance.address)
code = "import os, sys; print('tensorflow' in sys.modules, os.getppid())"
forked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
real = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                      input="", check=True)  # a keyword the fork server does not take
print(os.getpid(), forked.stdout.strip(), real.stdout.strip())
"""


def test_fork_nested_forks_the_childs_own_python_runs_too():
    """With ``fork_nested``, the child's ``subprocess.run`` of a python
    command is forked from the server (TensorFlow already imported, the
    server its parent), after a connection that sent nothing (the server
    carries on); a call with a keyword the server does not take (``input``)
    runs in a real process of the child's."""
    result = forked.run([PYTHON, "-c", NESTED], capture_output=True, text=True,
                        fork_nested=True)
    assert result.returncode == 0, result.stderr[-2000:]
    child, nested_imported, nested_parent, real_imported, real_parent = result.stdout.split()
    assert nested_imported == "True" and nested_parent != child
    assert real_imported == "False" and real_parent == child
    plain = forked.run([PYTHON, "-c", NESTED], capture_output=True, text=True)
    assert plain.stdout.split()[1] == "False"  # without it, a real process
