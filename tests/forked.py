"""Python processes forked from a warm one: ``run`` and ``Popen`` as in
``subprocess``, for the tests whose script runs must be processes of their
own (signals, kills, several workers of one cluster, exit codes, benches)
but need not pay for importing TensorFlow each time (about 4 CPU-seconds).

Each pytest worker starts one server, which imports TensorFlow and Keras as
the scripts do (``youtube8m_willow.startup``, the one module of this project
it imports) and then runs no TensorFlow op and starts no thread: a fork of
it is a fresh interpreter that has already imported them.
For each command the server forks a child that takes the caller's stdin,
stdout, stderr (passed over a Unix socket), environment, working folder and
``sys.argv``, runs the script, the ``-m`` module or the ``-c`` code as
``python`` would, and exits as ``python`` would (its exit code, or killed
by the signal that stopped it). The server reaps it and reports its wait
status to the caller.

A command that is not ``[sys.executable, script | -m module | -c code, ...]``,
or whose environment differs from the server's in a variable read when
TensorFlow or Keras is imported (``IMPORT_TIME``), runs as a real
``subprocess`` instead: start-up output and backend choice stay real.

``fork_nested=True`` does the same for the child's own ``subprocess.run``
(and ``check_output``) of such commands (a bench's train.py and eval.py
runs, its per-model child processes): they are forked from the server too,
over its listening socket, and are children of the server rather than of
the child.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# Variables that take effect when TensorFlow or Keras is imported: a command
# whose environment changes one of them gets a real new process.
IMPORT_TIME = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE",
               "TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND", "KERAS_HOME", "TF_USE_LEGACY_KERAS",
               "YT8M_VERBOSE_TF", "XLA_FLAGS", "TF_XLA_FLAGS", "PYTHONHASHSEED",
               "PYTHONWARNINGS", "PYTHONDONTWRITEBYTECODE", "CUDA_VISIBLE_DEVICES",
               "LD_PRELOAD", "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "TF_CPU_ALLOCATOR_USE_BFC",
               "TF_CPU_BFC_MEM_LIMIT_IN_MB")

_SERVER = r"""
import os, sys
started_env = dict(os.environ)  # what the callers' environments are compared with
os.environ["KERAS_BACKEND"] = "tensorflow"
from youtube8m_willow.startup import import_tensorflow_quietly
# TensorFlow and Keras, as the scripts import them: the cost every child is spared
import_tensorflow_quietly()
sys.path.insert(0, os.path.dirname(sys.argv[2]))
from forked import serve
del sys.path[:2]  # this folder and the "" of -c: each child sets its own
serve(int(sys.argv[1]), sys.argv[3], started_env)
"""


class _Server:
    """One warm process per pytest worker, started on first use."""

    _lock = threading.Lock()
    _instance: "_Server | None" = None

    def __init__(self):
        self.control, remote = socket.socketpair()
        self.env = dict(os.environ)
        # The listening socket of the children's own requests (fork_nested):
        # an abstract address, so no file and no path-length limit.
        address = f"forked-{os.getpid()}-{secrets.token_hex(8)}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(remote.fileno()), __file__, address],
            pass_fds=[remote.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=self.env)
        remote.close()

    @classmethod
    def get(cls) -> "_Server | _Nested":
        if _Nested.instance is not None:  # in a child: its requests go to its server
            return _Nested.instance
        with cls._lock:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = cls()
            return cls._instance

    def start(self, request: dict, fds: list[int]) -> None:
        with self._lock:
            socket.send_fds(self.control, [json.dumps(request).encode()], fds)


class _Nested:
    """The server as a child with ``fork_nested`` reaches it: one connection
    to its listening socket per request. ``env``: the server's environment."""

    instance: "_Nested | None" = None

    def __init__(self, address: str, env: dict):
        self.address, self.env = address, env

    def start(self, request: dict, fds: list[int]) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect("\0" + self.address)
            socket.send_fds(connection, [json.dumps(request).encode()], fds)


def serve(control_fd: int, address: str, env: dict) -> None:
    """The server's loop: fork a child for each request, from the test
    process (``control``) or from a child (a connection to ``address``);
    report each child's wait status on its status socket when it ends.
    One thread throughout. ``env``: the environment it was started with."""
    control = socket.socket(fileno=control_fd)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + address)
    listener.listen()
    status_of: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([control, listener], [], [], 0.05)
        for source in readable:
            if source is listener:
                message, fds = _nested_request(listener)
                if not message or len(fds) != 4:  # a caller gone before its request was whole
                    for fd in fds:
                        os.close(fd)
                    continue
            else:
                message, fds, _, _ = socket.recv_fds(control, 1 << 20, 4)
                if not message:
                    return  # the caller is gone
            stdin, stdout, stderr, status_fd = fds
            _flush()
            pid = os.fork()
            if pid == 0:
                control.close()
                listener.close()
                for other in status_of.values():
                    other.close()
                os.close(status_fd)
                request = json.loads(message)
                if request.pop("fork_nested", False):
                    _Nested.instance = _Nested(address, env)
                    subprocess.run = _run_nested
                _child(request, stdin, stdout, stderr)
            status = socket.socket(fileno=status_fd)
            status.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            status_of[pid] = status
            for fd in (stdin, stdout, stderr):
                os.close(fd)
        while status_of:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            status = status_of.pop(pid, None)
            if status is not None:
                try:
                    status.sendall(json.dumps({"status": wait_status}).encode() + b"\n")
                except OSError:
                    pass
                status.close()


def _nested_request(listener: socket.socket) -> tuple[bytes, list[int]]:
    """A child's request on the listening socket: (message, fds); an empty
    message where the caller closed, failed or took more than 5 s to send it."""
    try:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 4)
    except OSError:
        return b"", []
    return message, fds


def _child(request: dict, stdin: int, stdout: int, stderr: int) -> None:
    """In the forked child: become ``python argv...`` and exit as it would."""
    import atexit
    import random
    import runpy
    import signal
    import traceback

    for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)
    # As python started from a shell: SIGINT raises KeyboardInterrupt and no
    # signal is blocked, whatever the server inherited from the pytest worker
    # that started it (a handler set to ignore SIGINT, a blocked mask).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if os.environ.get("PYTHONUNBUFFERED"):  # sys.stdout and sys.stderr now write to 1 and 2
        sys.stdout.reconfigure(line_buffering=True, write_through=True)
    random.seed()
    import numpy as np

    np.random.seed()
    for path in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if path:
            sys.path.insert(0, path)
    argv = request["argv"]
    code = 0
    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path.insert(0, "")
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        elif argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit_:
        if exit_.code is None:
            code = 0
        elif isinstance(exit_.code, int):
            code = exit_.code
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # python re-raises SIGINT
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001 (python prints any uncaught error)
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # as python: wait for non-daemon threads, then atexit
        atexit._run_exitfuncs()
    finally:
        _flush()
        os._exit(code & 0xFF)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _forkable(command: list[str], env: dict | None) -> bool:
    """Whether ``command`` is ``python script | -m module | -c code ...``
    in an environment the server's import agrees with (the server is
    started only then)."""
    if len(command) < 2 or command[0] != sys.executable:
        return False
    if command[1].startswith("-") and command[1] not in ("-c", "-m"):
        return False
    env = os.environ if env is None else env
    server_env = _Server.get().env
    return all(env.get(name) == server_env.get(name) for name in IMPORT_TIME)


class Popen:
    """``subprocess.Popen`` of a forked child (a real one where the command
    cannot be forked): ``pid``, ``stdout``/``stderr`` pipes, ``poll``,
    ``wait``, ``communicate``, ``send_signal``, ``terminate``, ``kill``."""

    def __new__(cls, command, **kwargs):
        command = [str(part) for part in command]
        if not _forkable(command, kwargs.get("env")):
            kwargs.pop("fork_nested", None)
            return subprocess.Popen(command, **kwargs)
        return super().__new__(cls)

    def __init__(self, command, stdin=None, stdout=None, stderr=None, env=None, cwd=None,
                 text=False, universal_newlines=None, fork_nested=False):
        self.args = [str(part) for part in command]
        self.returncode = None
        text = bool(text or universal_newlines)
        self.stdin = None
        self.stdout, out_fd = self._target(stdout, 1, text)
        if stderr == subprocess.STDOUT:
            self.stderr, err_fd = None, os.dup(out_fd)
        else:
            self.stderr, err_fd = self._target(stderr, 2, text)
        in_fd = os.open(os.devnull, os.O_RDONLY) if stdin in (None, subprocess.DEVNULL) \
            else os.dup(stdin if isinstance(stdin, int) else stdin.fileno())
        self._status, status_remote = socket.socketpair()
        request = {"argv": self.args[1:], "env": dict(os.environ if env is None else env),
                   "cwd": str(Path(cwd) if cwd else Path.cwd()), "fork_nested": fork_nested}
        try:
            _Server.get().start(request, [in_fd, out_fd, err_fd, status_remote.fileno()])
        finally:
            for fd in (in_fd, out_fd, err_fd):
                os.close(fd)
            status_remote.close()
        self._buffer = b""
        started = self._message(timeout=60)
        if started is None:
            raise RuntimeError(f"the fork server did not start {self.args}")
        self.pid = started["pid"]

    @staticmethod
    def _target(option, default_fd: int, text: bool):
        """(file object the caller reads or None, the fd the child writes to)."""
        if option == subprocess.PIPE:
            read_fd, write_fd = os.pipe()
            return open(read_fd, "r" if text else "rb"), write_fd
        if option == subprocess.DEVNULL:
            return None, os.open(os.devnull, os.O_WRONLY)
        if option is None:
            return None, os.dup(default_fd)
        return None, os.dup(option if isinstance(option, int) else option.fileno())

    def _message(self, timeout: float | None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._status], [], [], left)
            if not ready:
                return None
            chunk = self._status.recv(4096)
            if not chunk:
                raise RuntimeError(f"the fork server stopped while running {self.args}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def poll(self):
        if self.returncode is None:
            message = self._message(timeout=0)
            if message is not None:
                self.returncode = os.waitstatus_to_exitcode(message["status"])
                self._status.close()
        return self.returncode

    def wait(self, timeout: float | None = None):
        if self.returncode is None:
            message = self._message(timeout)
            if message is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = os.waitstatus_to_exitcode(message["status"])
            self._status.close()
        return self.returncode

    def communicate(self, timeout: float | None = None):
        """Reads stdout and stderr to their ends (each in a thread), then waits."""
        results = {}

        def read(name, stream):
            results[name] = stream.read()
            stream.close()

        readers = [threading.Thread(target=read, args=(name, stream), daemon=True)
                   for name, stream in (("out", self.stdout), ("err", self.stderr)) if stream]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return results.get("out"), results.get("err")

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)


def run(command, capture_output: bool = False, timeout: float | None = None,
        check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` of a forked child (killed at ``timeout``), or
    ``subprocess.run`` itself where the command cannot be forked.
    ``fork_nested=True``: the child's own runs of such commands are forked too."""
    command = [str(part) for part in command]
    if not _forkable(command, kwargs.get("env")):
        kwargs.pop("fork_nested", None)
        return _subprocess_run(command, capture_output=capture_output, timeout=timeout,
                               check=check, **kwargs)
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process = Popen(command, **kwargs)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    if check:
        result.check_returncode()
    return result


_subprocess_run = subprocess.run
# What ``run`` takes of ``subprocess.run``'s keywords: a child's call with any
# other (input, encoding, start_new_session, ...) runs as it would have.
_RUN_KEYWORDS = {"capture_output", "timeout", "check", "stdin", "stdout", "stderr", "env", "cwd",
                 "text", "universal_newlines"}


def _run_nested(*args, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` (and so ``check_output``) in a child started with
    ``fork_nested``: ``run`` (whose children fork theirs too) where the call
    is one it takes, ``subprocess.run`` itself otherwise."""
    command = args[0] if len(args) == 1 else kwargs.get("args")
    if len(args) > 1 or not isinstance(command, (list, tuple)) \
            or set(kwargs) - _RUN_KEYWORDS - {"args"} \
            or kwargs.get("stdin") not in (None, subprocess.DEVNULL):
        return _subprocess_run(*args, **kwargs)
    kwargs.pop("args", None)
    return run(command, fork_nested=True, **kwargs)
