"""Checkpoints in the original's (TF1, name-based) format.

The project reads and writes one format: the TF1 ``Saver`` layout, keyed by
the original variable names (``hidden1_weights``, ``gates/weights``,
``<name>/Adam``, ``<name>/Adam_1``, ``<name>/RMSProp``, ``model/beta1_power``,
``global_step``). So a train_dir written by the original code and one
written here are interchangeable: eval, inference and continued training
accept both.

Which original wrote a checkpoint (WILLOW, the Google starter's ``tower/``
names, TF 1.0/0.12 RNN spellings) is read from its names
(``youtube8m_willow.legacy``): tensors are renamed to the port's names on
reading, and a continued run writes its names back in the checkpoint's own
naming, so the original's tools can still read it.

This module reads and writes the files and knows no model and no optimizer:
which tensors are the optimizer's state, and how they are gathered and
restored, is ``training.optimizer_state``'s; what a checkpoint says about
its model (the graph variant its names call for, sizes, the ``.meta``
graph's ops) is read by ``models.original_train_dir``. The functions that
must tell model weights from the rest take that test (``not_model``) from
their caller.

Writes are atomic: the tensors go to a temporary prefix that is renamed into
place, and only then does the ``checkpoint`` state file (rewritten through a
temporary file) point at it. A killed process never leaves a partial
checkpoint as the latest one.

Rotation (``--keep_checkpoints``) spans every run of this project on the same
model in a train_dir: each checkpoint the trainer writes has a companion
``model.ckpt-N.writer.json`` naming the model it holds (a digest of its
variables' names and shapes), and only checkpoints with that companion for
that model are ever deleted. The original code's checkpoints (which have
none), those of another model and those of this project's versions before
the companion are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import tensorflow as tf

from youtube8m_willow.errors import CheckpointError
from youtube8m_willow.legacy import Naming, detect_naming
from youtube8m_willow.legacy.fit import fit_problems

log = logging.getLogger("youtube8m_willow")

CHECKPOINT_PREFIX = "model.ckpt"
STATE_FILE = "checkpoint"
# The companion that marks a checkpoint this project's trainer wrote (CheckpointWriter).
WRITER_SUFFIX = ".writer.json"
WRITER_FORMAT = 1
# The port's (WILLOW's) name of the global step; legacy.Naming maps the others.
GLOBAL_STEP = "global_step"


# ---------------------------------------------------------------- finding

def checkpoint_path(train_dir: str, check_point: int = -1) -> str:
    """The checkpoint prefix to load: the latest (-1) or ``model.ckpt-N``."""
    if not tf.io.gfile.isdir(train_dir):
        raise CheckpointError(f"train_dir {train_dir!r} does not exist")
    if check_point >= 0:
        path = os.path.join(train_dir, f"{CHECKPOINT_PREFIX}-{check_point}")
        if not tf.io.gfile.exists(path + ".index"):
            raise CheckpointError(f"no checkpoint {path!r} (--check_point={check_point})")
        return path
    path = latest_checkpoint(train_dir)
    if path is None:
        leftovers = unusable_checkpoint_files(train_dir)
        raise CheckpointError(f"no checkpoint found in train_dir {train_dir!r}" + (
            f" ({describe_unusable(leftovers)})" if leftovers else ""))
    return path


def latest_checkpoint(train_dir: str) -> str | None:
    """The checkpoint to continue or evaluate, or None when train_dir has none.

    The one the state file names, looked up by its base name inside
    train_dir: TF1's Saver writes absolute paths, so a train_dir copied from
    another machine or a bucket names paths that are not here. When the
    state file is missing or names no complete checkpoint here: the newest
    complete checkpoint present, with a warning (said once per process:
    eval.py calls this on every poll). A checkpoint outside train_dir is
    never used.
    """
    named = _named_checkpoint(train_dir)
    if named is not None:
        local = os.path.join(train_dir, os.path.basename(named))
        if is_complete(local):
            written = named if "://" in named else os.path.join(train_dir, named)
            if not _same_path(local, written):
                _say_once(logging.INFO, "the checkpoint state file of %s names %s (written "
                          "elsewhere): using %s", train_dir, named, local)
            return local
    newest = _newest_complete(train_dir)
    if newest is not None:
        named_text = (f"names {named!r}, which is not complete in train_dir"
                      if named is not None else "is missing or names no checkpoint")
        _say_once(logging.WARNING, "the checkpoint state file %s %s: using the newest complete "
                  "checkpoint there, %s", os.path.join(train_dir, STATE_FILE), named_text,
                  newest)
    return newest


def is_complete(prefix: str) -> bool:
    """Whether a checkpoint's index and every data shard it was written with exist."""
    if not tf.io.gfile.exists(prefix + ".index"):
        return False
    shards = tf.io.gfile.glob(prefix + ".data-*-of-*")
    match = re.search(r"-of-(\d+)$", shards[0]) if shards else None
    return match is not None and len(shards) == int(match.group(1))


def unusable_checkpoint_files(train_dir: str) -> list[str]:
    """Names of train_dir's checkpoint files when it has no complete
    checkpoint to use (a ``.data`` file without its index, a state file
    naming one that is not here), else []. Temporaries of a killed write
    and the files of this project's own write that a kill interrupted (its
    writer mark is in place before the data) do not count."""
    if latest_checkpoint(train_dir) is not None:
        return []
    names = [os.path.basename(p) for p in tf.io.gfile.glob(
        os.path.join(train_dir, f"{CHECKPOINT_PREFIX}-*"))]
    interrupted = {_prefix_of(name) for name in names if name.endswith(WRITER_SUFFIX)}
    names = sorted(n for n in names if ".tmp" not in n and _prefix_of(n) not in interrupted)
    if tf.io.gfile.exists(os.path.join(train_dir, STATE_FILE)):
        names.append(STATE_FILE)
    return names


def _prefix_of(name: str) -> str:
    """``model.ckpt-N`` of one of its files' names."""
    match = re.match(re.escape(CHECKPOINT_PREFIX) + r"-\d+", name)
    return match.group(0) if match else name


def describe_unusable(names: list[str]) -> str:
    """A short description of ``unusable_checkpoint_files``' answer."""
    if names == [STATE_FILE]:
        return "its 'checkpoint' state file names checkpoints that are not there"
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"only {shown}: a checkpoint needs its .index and every .data shard"


_said: set[tuple] = set()


def _say_once(level: int, message: str, *args) -> None:
    """Logs ``message`` the first time this process would log it."""
    if (message, args) not in _said:
        _said.add((message, args))
        log.log(level, message, *args)


def _named_checkpoint(train_dir: str) -> str | None:
    """The latest checkpoint path as train_dir's state file writes it, or None."""
    state = os.path.join(train_dir, STATE_FILE)
    if not tf.io.gfile.exists(state):
        return None
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', _read_text(state), re.M)
    return match.group(1) if match else None


def _same_path(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.abspath(a) == os.path.abspath(b)


def _newest_complete(train_dir: str) -> str | None:
    """The complete checkpoint of train_dir with the highest step, or None."""
    for step in reversed(list(checkpoint_steps(train_dir))):
        path = os.path.join(train_dir, f"{CHECKPOINT_PREFIX}-{step}")
        if is_complete(path):
            return path
    return None


def step_of(path: str) -> int:
    """The global step in a ``model.ckpt-N`` prefix."""
    match = re.search(r"-(\d+)$", path)
    return int(match.group(1)) if match else -1


# ---------------------------------------------------------------- reading

def _reader(path: str):
    try:
        return tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {_first_line(error)}") from None


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint, by their stored names."""
    reader = _reader(path)
    try:  # the files may vanish while being read (rotated away by a trainer)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except (tf.errors.OpError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {_first_line(error)}") from None


def naming_of(path: str) -> Naming:
    """The naming (origin, RNN spelling) of a checkpoint, from its index."""
    return detect_naming(_reader(path).get_variable_to_shape_map())


class StoredTensors(Mapping):
    """A checkpoint's tensors under the port's names, each read when it is
    asked for: a restore holds one stored tensor beside the model, never the
    whole checkpoint (Gated NetVLAD's weights with their Adam slots are 4 GB,
    of which inference needs a third). ``shapes`` come from the index alone.
    """

    def __init__(self, path: str):
        reader = _reader(path)
        stored_shapes = reader.get_variable_to_shape_map()
        self.path = path
        self.naming = detect_naming(list(stored_shapes))
        self._stored = {self.naming.to_port(name): name for name in stored_shapes}
        self._dtypes = reader.get_variable_to_dtype_map()
        self.shapes = {port: tuple(stored_shapes[name]) for port, name in self._stored.items()}

    def __getitem__(self, name: str) -> tf.Tensor:
        stored = self._stored[name]
        try:  # the files may vanish while being read (rotated away by a trainer)
            return tf.raw_ops.RestoreV2(prefix=self.path, tensor_names=[stored],
                                        shape_and_slices=[""], dtypes=[self._dtypes[stored]])[0]
        except tf.errors.OpError as error:
            raise CheckpointError(f"cannot read checkpoint {self.path!r}: "
                                  f"{_first_line(error)}") from None

    def __contains__(self, name) -> bool:  # from the index: Mapping's would read the tensor
        return name in self._stored

    def __iter__(self) -> Iterator[str]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)


def assign_model_weights(model_weights: dict, tensors: StoredTensors, path: str,
                         not_model: Callable[[str], bool]) -> None:
    """Assigns a checkpoint's tensors to ``{TF1 name: variable}`` (port names),
    one at a time; a mismatch lists the missing, unexpected and mis-shaped
    variables, named as the checkpoint stores them. Stored names for which
    ``not_model`` holds (the optimizer's state, the step) are not weights."""
    stored = {name: shape for name, shape in tensors.shapes.items() if not not_model(name)}
    problems = fit_problems(model_weights, stored, tensors.naming.to_stored)
    if problems:
        raise CheckpointError("; ".join(
            [f"checkpoint {path!r} does not fit the model flags", *problems]))
    for name, var in model_weights.items():
        var.assign(tensors[name])  # Keras casts to the variable's dtype


def stored_step(tensors: StoredTensors) -> int:
    """The global step a checkpoint stores, else the one in its name (0 without)."""
    if GLOBAL_STEP in tensors:
        return int(tensors[GLOBAL_STEP])
    return max(step_of(tensors.path), 0)


# ---------------------------------------------------------------- writing

def save(train_dir: str, tensors: dict[str, tf.Tensor], global_step: int) -> str:
    """Writes ``model.ckpt-<global_step>`` atomically and makes it the latest.
    Deletes nothing (rotation: ``CheckpointWriter``)."""
    final = _write_tensors(train_dir, tensors, global_step)
    _write_state(train_dir, final)
    return final


class CheckpointWriter:
    """Writes a training run's checkpoints and rotates them.

    Every checkpoint it writes gets a companion ``model.ckpt-N.writer.json``
    (written before the index, like the input state) recording that this
    project wrote it and for which model: a digest of the model variables'
    stored names and shapes (``model_signature``). Rotation keeps the newest
    ``keep`` of the train_dir's checkpoints whose companion names this
    model, whichever run wrote them (0: keep all, as TF1's
    ``max_to_keep=0``); the one just written counts as the newest. A
    checkpoint without that companion (the original code's, which writes
    ``model.ckpt-N.meta`` instead) or written for another model is never
    deleted. ``not_model`` tells the stored names that are no model weight
    (the optimizer's state, the step): they do not enter the digest.
    """

    def __init__(self, train_dir: str, keep: int = 5, *, not_model: Callable[[str], bool]):
        self.train_dir = train_dir
        self.keep = int(keep)
        self.not_model = not_model
        self.written: list[str] = []

    def save(self, tensors: dict[str, tf.Tensor], global_step: int,
             companions: dict[str, str] | None = None) -> str:
        """Writes the checkpoint of ``global_step`` and its ``companions``
        (``{suffix: text}``, e.g. the input state), then rotates."""
        signature = model_signature(tensors, self.not_model)
        mark = json.dumps({"format": WRITER_FORMAT, "model": signature}) + "\n"
        final = _write_tensors(self.train_dir, tensors, global_step,
                               {**(companions or {}), WRITER_SUFFIX: mark})
        if final not in self.written:
            self.written.append(final)
        stale = self._stale(final, signature)
        _write_state(self.train_dir, final, dropped=stale)
        for old in stale:  # only after the state file stopped naming them
            _delete(old)
        return final

    def _stale(self, newest: str, signature: str) -> list[str]:
        """This model's checkpoints beyond the newest ``keep``, oldest first."""
        if self.keep <= 0:
            return []
        ours = [path for path in _prefixes(self.train_dir)
                if path != newest and written_for(path) == signature]
        return ours[:max(len(ours) - (self.keep - 1), 0)]


def model_signature(tensors: Mapping[str, object], not_model: Callable[[str], bool]) -> str:
    """A digest of a checkpoint's model variables, names and shapes (not the
    names ``not_model`` holds for: the optimizer's slots, the step): equal
    for every checkpoint of one model."""
    shapes = sorted((name, [int(d) for d in tensor.shape]) for name, tensor in tensors.items()
                    if not not_model(name))
    return hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]


def written_for(path: str) -> str | None:
    """The model signature a checkpoint's writer companion records, or None
    for a checkpoint this project's trainer did not write (or an unreadable mark)."""
    mark = path + WRITER_SUFFIX
    if not tf.io.gfile.exists(mark):
        return None
    try:
        values = json.loads(_read_text(mark))
        return str(values["model"]) if values.get("format") == WRITER_FORMAT else None
    except (ValueError, KeyError, TypeError, AttributeError, tf.errors.OpError):
        return None


def _prefixes(train_dir: str) -> list[str]:
    return [os.path.join(train_dir, f"{CHECKPOINT_PREFIX}-{step}")
            for step in checkpoint_steps(train_dir)]


def _delete(prefix: str) -> None:
    """Deletes a checkpoint: its index first (it is then incomplete), then the rest."""
    index = prefix + ".index"
    if tf.io.gfile.exists(index):
        tf.io.gfile.remove(index)
    for path in tf.io.gfile.glob(prefix + ".*"):
        tf.io.gfile.remove(path)


def _write_tensors(train_dir: str, tensors: dict[str, tf.Tensor], global_step: int,
                   companions: dict[str, str] | None = None) -> str:
    """Writes the tensors under a temporary prefix, then puts the checkpoint
    in place: the companions first (the writer's mark among them tells a
    write of this project that a kill interrupted), then the data files, and
    the index last (a checkpoint is complete when its index exists)."""
    tf.io.gfile.makedirs(train_dir)
    final = os.path.join(train_dir, f"{CHECKPOINT_PREFIX}-{global_step}")
    temporary = f"{final}.tmp{os.getpid()}"
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=temporary, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.convert_to_tensor(tensors[n]) for n in names])
    for companion, text in (companions or {}).items():
        _write_text_atomic(final + companion, text)
    for suffix in sorted(_files_of(temporary), key=lambda s: s == ".index"):
        tf.io.gfile.rename(temporary + suffix, final + suffix, overwrite=True)
    return final


def _files_of(prefix: str) -> list[str]:
    return [path[len(prefix):] for path in tf.io.gfile.glob(prefix + ".*")]


def _write_state(train_dir: str, newest: str, dropped: Iterable[str] = ()) -> None:
    """Points the state file at ``newest``; it lists every other complete
    checkpoint of train_dir but the ``dropped`` ones, oldest first."""
    dropped = set(dropped)
    others = _prefixes(train_dir)
    kept = [p for p in others if p != newest and p not in dropped] + [newest]
    lines = [f'model_checkpoint_path: "{os.path.basename(newest)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in kept]
    _write_text_atomic(os.path.join(train_dir, STATE_FILE), "\n".join(lines) + "\n")


# ---------------------------------------------------------------- helpers

def _write_text_atomic(path: str, text: str) -> None:
    from youtube8m_willow.atomic import write_atomic

    write_atomic(path, text)


def _read_text(path: str) -> str:
    with tf.io.gfile.GFile(path, "r") as handle:
        return handle.read()


def _first_line(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def checkpoint_steps(train_dir: str) -> Iterable[int]:
    """Steps of the complete checkpoints in train_dir, ascending."""
    pattern = re.compile(re.escape(CHECKPOINT_PREFIX) + r"-(\d+)\.index$")
    paths = tf.io.gfile.glob(os.path.join(train_dir, f"{CHECKPOINT_PREFIX}-*.index"))
    return sorted(int(m.group(1)) for m in map(pattern.search, paths) if m)
