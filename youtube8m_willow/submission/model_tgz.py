"""Model tarballs (the 2018/2019 Kaggle model upload): inference.py
``--output_model_tgz`` packs a checkpoint and its ``model_flags.json``;
``--input_model_tgz`` with ``--untar_model_dir`` runs from such a tarball."""

from __future__ import annotations

import io
import os
import tarfile

import tensorflow as tf

from youtube8m_willow import checkpoint
from youtube8m_willow.atomic import AtomicFile
from youtube8m_willow.config import MODEL_FLAGS_FILE, ModelConfig
from youtube8m_willow.errors import ConfigError


def write_model_tgz(tgz_path: str, checkpoint_path: str, model_config: ModelConfig) -> None:
    """Packs the checkpoint's files, a ``checkpoint`` state file naming it, and
    the model's full flags (so the tarball needs no model flags), atomically."""
    name = os.path.basename(checkpoint_path)
    members = {os.path.basename(p): p for p in tf.io.gfile.glob(checkpoint_path + ".*")
               if not p.endswith(".meta")}
    texts = {checkpoint.STATE_FILE: f'model_checkpoint_path: "{name}"\n',
             MODEL_FLAGS_FILE: model_config.to_json()}
    with AtomicFile(tgz_path, "wb") as target, tarfile.open(fileobj=target.handle,
                                                           mode="w:gz") as tar:
        for arcname, path in sorted(members.items()):
            with tf.io.gfile.GFile(path, "rb") as source:
                _add(tar, arcname, source.read())
        for arcname, text in texts.items():
            _add(tar, arcname, text.encode())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def extract_model_tgz(tgz_path: str, directory: str) -> str:
    """Unpacks a model tarball into ``directory`` (only plain files, no paths
    out of it); returns the directory, to be used as the train_dir."""
    if not tf.io.gfile.exists(tgz_path):
        raise FileNotFoundError(f"{tgz_path}: no such model tarball (--input_model_tgz)")
    tf.io.gfile.makedirs(directory)
    try:
        with tf.io.gfile.GFile(tgz_path, "rb") as handle:
            with tarfile.open(fileobj=io.BytesIO(handle.read()), mode="r:gz") as tar:
                tar.extractall(directory, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise ConfigError(f"{tgz_path}: not a readable model tarball ({error})") from None
    return directory
