"""Atomic file writes: a file is written beside its target under a temporary
name (``<path>.tmp-<pid>``) and renamed onto the target only when complete, so
a crash or an error while writing never leaves a partial file under the
target's name (an error removes the temporary file).

Paths with a scheme (``gs://...``) go through ``tf.io.gfile``; a local
write does not load TensorFlow (configs and portable weights files are
written without it).
"""

from __future__ import annotations

import os
import sys


class AtomicFile:
    """A file written under a temporary name, renamed to ``path`` by a clean
    ``close()``; ``abort()`` (or an exception inside ``with``) removes it.
    The parent directory is created if needed.

    Args:
        path: the target, local or remote.
        mode: "w" (text, UTF-8) or "wb".

    Write with ``write`` or through ``handle`` (a file object, seekable for
    local paths), e.g. ``np.savez(target.handle, ...)``.
    """

    def __init__(self, path: str, mode: str = "w"):
        self.path = path
        directory = os.path.dirname(path)
        if directory:
            _files(path).makedirs(directory)
        self.temporary = f"{path}.tmp-{os.getpid()}"
        self.handle = _open(self.temporary, mode)

    def write(self, data: str | bytes) -> None:
        self.handle.write(data)

    def close(self) -> None:
        self.handle.close()
        _files(self.path).rename(self.temporary, self.path)

    def abort(self) -> None:
        self.handle.close()
        files = _files(self.path)
        if files.exists(self.temporary):
            files.remove(self.temporary)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_atomic(path: str, data: str | bytes) -> None:
    """Writes ``data`` (text as UTF-8, or bytes) to ``path`` atomically."""
    with AtomicFile(path, "wb" if isinstance(data, bytes) else "w") as target:
        target.write(data)


class _LocalFiles:
    """Local file operations without TensorFlow."""

    makedirs = staticmethod(lambda directory: os.makedirs(directory, exist_ok=True))
    rename = staticmethod(os.replace)
    exists = staticmethod(os.path.exists)
    remove = staticmethod(os.remove)


class _GFiles:
    """``tf.io.gfile``'s file operations."""

    def __init__(self, gfile):
        self.makedirs, self.exists, self.remove = gfile.makedirs, gfile.exists, gfile.remove
        self.rename = lambda source, target: gfile.rename(source, target, overwrite=True)


def _files(path: str):
    """``tf.io.gfile`` for remote paths, and for every path once TensorFlow
    is loaded (all the package's file operations then go one way); ``os``
    otherwise, so that a local write never loads TensorFlow."""
    if "://" in path or "tensorflow" in sys.modules:
        import tensorflow as tf

        return _GFiles(tf.io.gfile)
    return _LocalFiles


def _open(path: str, mode: str):
    """A remote file through ``tf.io.gfile``; a local one with ``open``,
    which is seekable (``np.savez`` needs that; a GFile being written is not)."""
    if "://" in path:
        import tensorflow as tf

        return tf.io.gfile.GFile(path, mode)
    return open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8", newline="")
