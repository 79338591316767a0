"""SavedModel export with the original ``export_model`` serving contract.

The signature takes a batch of serialized ``tf.Example`` (video-level) or
``tf.SequenceExample`` (frame-level) records, ``example_bytes``, and returns
``video_id``, ``class_indexes`` (top-k class ids) and ``predictions`` (their
scores), computed in eval mode with every weight, batch-norm moving
statistics included (the original exported trainable variables only), with
TensorFlow's own ops only (``kernels.tensorflow_ops_only``).
"""

from __future__ import annotations

import os

import tensorflow as tf

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import ReaderConfig, parse_serialized
from youtube8m_willow.layers import kernels

EXPORT_DIR = "export"
MOVED_ASIDE = ".old"  # an export being replaced, until its replacement is in place


class ServingModule(tf.Module):
    """Wraps a model with the parsing of serialized records.

    The SavedModel keeps the variables that ``serve`` reads, not the Keras
    object graph: the model is reached through ``serve``'s closure, so the
    export neither walks nor serializes its layers (about a quarter of a
    small model's export time). Loading it gives ``serve``, its signature
    and ``model_variables``."""

    def __init__(self, model, model_config: ModelConfig, top_k: int = 20):
        super().__init__()
        self.model_variables = list(model.variables)
        top_k = min(int(top_k), model_config.num_classes)
        # Labels do not matter for serving; a stray one must not fail a request.
        reader_config = ReaderConfig.for_model(model_config, drop_out_of_range_labels=True)

        def serve(example_bytes):
            batch = parse_serialized(example_bytes, reader_config, source="<serving request>")
            probabilities = model(batch, training=False)
            scores, classes = tf.math.top_k(probabilities, k=top_k)
            return {"video_id": batch["video_ids"], "class_indexes": classes,
                    "predictions": scores}

        # No AutoGraph: the parsing and the model use no Python control flow on tensors.
        self.serve = tf.function(
            serve, input_signature=[tf.TensorSpec([None], tf.string, name="example_bytes")],
            autograph=False)


# The serving signature needs no gradients: their functions stay out of the export.
SAVE_OPTIONS = tf.saved_model.SaveOptions(experimental_custom_gradients=False)


def export_model(model, model_config: ModelConfig, train_dir: str, global_step: int,
                 top_k: int = 20) -> str:
    """Writes ``train_dir/export/step_<global_step>`` atomically: the SavedModel
    goes to a temporary folder renamed into place; an earlier export of the
    same step (a resumed run ending where the last one did) is replaced only
    once the new one is complete (``_replace_folder``)."""
    export_dir = os.path.join(train_dir, EXPORT_DIR)
    final = os.path.join(export_dir, f"step_{global_step}")
    temporary = final + ".tmp"
    _recover_moved_aside(export_dir)
    if tf.io.gfile.exists(temporary):  # left by a killed export
        tf.io.gfile.rmtree(temporary)
    module = ServingModule(model, model_config, top_k)
    with kernels.tensorflow_ops_only():  # loadable without this project's kernels
        tf.saved_model.save(module, temporary, signatures={"serving_default": module.serve},
                            options=SAVE_OPTIONS)
    _replace_folder(temporary, final)
    return final


def _replace_folder(new: str, final: str) -> None:
    """Renames ``new`` to ``final``. A folder cannot be renamed over a
    non-empty one: an existing ``final`` is moved aside first and deleted
    only once ``new`` is in its place (put back if that rename fails; after
    a crash between the renames, ``_recover_moved_aside`` puts it back)."""
    if not tf.io.gfile.exists(final):
        tf.io.gfile.rename(new, final)
        return
    aside = final + MOVED_ASIDE
    tf.io.gfile.rename(final, aside)
    try:
        tf.io.gfile.rename(new, final)
    except BaseException:
        tf.io.gfile.rename(aside, final)
        raise
    tf.io.gfile.rmtree(aside)


def _recover_moved_aside(export_dir: str) -> None:
    """Puts back each export an interrupted replacement moved aside, or
    deletes it where its replacement is already in place."""
    for aside in tf.io.gfile.glob(os.path.join(export_dir, "step_*" + MOVED_ASIDE)):
        final = aside[:-len(MOVED_ASIDE)]
        if tf.io.gfile.exists(final):
            tf.io.gfile.rmtree(aside)
        else:
            tf.io.gfile.rename(aside, final)
