"""Original checkpoints of every origin load (SPEC sections 8 and 14).

* The Google starter's LstmModel: a checkpoint under the starter's names
  (``tower/rnn/multi_rnn_cell/...``) picks the starter's graph through
  inference.py with ``--model=LstmModel`` alone, and predicts what a NumPy
  LSTM (last layer's final h) and MoE compute from its tensors.
* TF 1.0/1.1 and TF 0.12 RNN spellings load with equal predictions, and a
  continued run writes them back.
* The naming of each origin round-trips.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import numpy as np
import pytest
import tensorflow as tf

from conftest import read_submission, run_script
from test_frame_level_models import small
from test_recurrent import l2_rows, ref_dynamic_rnn, ref_lstm_cell, sigmoid
from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import DataError, ReaderConfig, make_dataset
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.layers.core import weights_to_be_restored
from youtube8m_willow.prediction import Predictor
from youtube8m_willow.legacy import PORT_NAMING, Naming, detect_naming, starter2017
from youtube8m_willow.legacy.rnn_spellings import CURRENT, TF0_12, TF1_0
from youtube8m_willow.models.registry import create_model, is_frame_level, model_names
from youtube8m_willow.training.optimizer_state import is_optimizer_name, training_state
from youtube8m_willow.training.trainer import TrainConfig, Trainer

CLASSES, MIXTURES, UNITS, FEATURES = 5, 2, 4, (6, 4)
LSTM_FLAGS = ["--model=LstmModel", "--frame_features=True", "--feature_names=rgb,audio",
              f"--feature_sizes={FEATURES[0]},{FEATURES[1]}", f"--lstm_cells={UNITS}",
              "--lstm_layers=2", f"--moe_num_mixtures={MIXTURES}", f"--num_classes={CLASSES}",
              "--max_frames=8"]


def _starter_lstm_tensors(seed=0) -> dict[str, np.ndarray]:
    """Random tensors under the starter's names: 2 LSTM layers, MoE head,
    plus the optimizer state eval ignores."""
    rng = np.random.default_rng(seed)
    depth, cell = sum(FEATURES), "tower/rnn/multi_rnn_cell/cell_{}/basic_lstm_cell"
    shapes = {f"{cell.format(0)}/kernel": [depth + UNITS, 4 * UNITS],
              f"{cell.format(0)}/bias": [4 * UNITS],
              f"{cell.format(1)}/kernel": [2 * UNITS, 4 * UNITS],
              f"{cell.format(1)}/bias": [4 * UNITS],
              "tower/gates/weights": [UNITS, CLASSES * (MIXTURES + 1)],
              "tower/experts/weights": [UNITS, CLASSES * MIXTURES],
              "tower/experts/biases": [CLASSES * MIXTURES]}
    tensors = {name: rng.normal(0, 0.7, shape).astype(np.float32) for name, shape in shapes.items()}
    tensors["tower/gates/weights/Adam"] = np.zeros(shapes["tower/gates/weights"], np.float32)
    tensors.update(global_step=np.int64(7), beta1_power=np.float32(0.9 ** 8))
    return tensors


def _numpy_starter_lstm(tensors, video_matrix, num_frames) -> np.ndarray:
    """The starter's LstmModel from its definition: MultiRNNCell of
    BasicLSTMCell(forget_bias=1), dynamic_rnn(sequence_length=num_frames),
    MoE on the last layer's final h."""
    cell = "tower/rnn/multi_rnn_cell/cell_{}/basic_lstm_cell/"
    cells = [ref_lstm_cell({k: tensors[cell.format(i) + k].astype(np.float64)
                            for k in ("kernel", "bias")}) for i in range(2)]
    states = ref_dynamic_rnn(cells, l2_rows(video_matrix), num_frames)
    last_h = states[:, -UNITS:]
    gates = last_h @ tensors["tower/gates/weights"]
    gates = np.exp(gates.reshape(-1, MIXTURES + 1))
    gates /= gates.sum(1, keepdims=True)
    experts = sigmoid(last_h @ tensors["tower/experts/weights"] + tensors["tower/experts/biases"])
    probabilities = (gates[:, :MIXTURES] * experts.reshape(-1, MIXTURES)).sum(1)
    return probabilities.reshape(-1, CLASSES)


@pytest.fixture(scope="module")
def frame_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoint_frames")
    return write_synthetic_dataset(str(root), num_videos=6, num_classes=CLASSES, num_shards=1,
                                   video_level=False, max_frames=8, min_frames=1,
                                   feature_sizes=FEATURES, seed=3)["frame"]


def _records(pattern, config):
    batch = next(iter(make_dataset(pattern, ReaderConfig.for_model(config), 64, training=False,
                                   num_epochs=1, num_readers=1)))
    return ([v.decode() for v in batch["video_ids"].numpy()], batch["video_matrix"].numpy(),
            batch["num_frames"].numpy())


@pytest.mark.slow
def test_starter_lstm_checkpoint_picks_the_starters_graph(frame_data, tmp_path):
    tensors = _starter_lstm_tensors()
    checkpoint.save(str(tmp_path / "train_dir"), tensors, 7)
    out = tmp_path / "out.csv"
    run_script("inference.py", f"--train_dir={tmp_path / 'train_dir'}",
               f"--input_data_pattern={frame_data}", f"--output_file={out}",
               f"--top_k={CLASSES}", *LSTM_FLAGS)
    config = ModelConfig(model="LstmModel", num_classes=CLASSES, frame_features=True,
                         feature_names=("rgb", "audio"), feature_sizes=FEATURES, max_frames=8)
    video_ids, video_matrix, num_frames = _records(frame_data, config)
    assert sorted(set(num_frames)) != [num_frames[0]], "videos of several lengths"
    expected = _numpy_starter_lstm(tensors, video_matrix, num_frames)
    rows = read_submission(out)
    assert list(rows) == video_ids
    for video_id, want in zip(video_ids, expected):
        got = np.zeros(CLASSES)
        for label, score in rows[video_id]:
            got[label] = score
        np.testing.assert_allclose(got, want, atol=2e-6)  # the CSV keeps 6 decimals


def test_lstm_variant_flag_chooses_for_a_new_run():
    config = ModelConfig(model="LstmModel", num_classes=3, frame_features=True,
                         feature_names=("rgb",), feature_sizes=(3,), max_frames=4,
                         lstm_cells=UNITS, lstm_layers=2)
    willow = create_model(config).build_for_config()
    starter = create_model(config.replace(lstm_variant="starter")).build_for_config()
    assert "RNN/rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel" in willow.tf1_weights()
    assert "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel" in starter.tf1_weights()
    # WILLOW's head reads [c1, h1, c2, h2]; the starter's the last h only.
    assert willow.tf1_weights()["gates/weights"].shape == (4 * UNITS, 9)
    assert starter.tf1_weights()["gates/weights"].shape == (UNITS, 9)
    for model, variant in ((willow, "willow"), (starter, "starter")):
        names = list(model.tf1_weights())
        assert type(model).config_for_tf1_names(config, names).lstm_variant == variant
    with pytest.raises(ValueError, match="reads the frames in order"):
        create_model(config.replace(lstm_variant="starter", lstm_backward=True))


# --- old RNN spellings --------------------------------------------------------

RNN_MODELS = {  # id: (model flags, the naming a checkpoint of it is stored with)
    "willow-lstm": (dict(model="LstmModel"), PORT_NAMING),
    "willow-gru": (dict(model="GruModel"), PORT_NAMING),
    "starter-lstm": (dict(model="LstmModel", lstm_variant="starter"), Naming(starter2017)),
}
OLD_FRAGMENTS = {TF1_0: ("cell/weights", "cell/biases", "gates/weights", "candidate/biases"),
                 TF0_12: ("MultiRNNCell/Cell1/", "/Linear/Matrix", "/Linear/Bias")}


def _rnn_config(flags) -> ModelConfig:
    return ModelConfig(num_classes=3, frame_features=True, feature_names=("rgb",),
                       feature_sizes=(3,), max_frames=5, lstm_cells=UNITS, lstm_layers=2,
                       gru_cells=UNITS, gru_layers=2, moe_num_mixtures=2, **flags)


def _saved_rnn_checkpoint(train_dir, flags, naming) -> tuple[str, np.ndarray, dict]:
    """A checkpoint of a random model in ``naming``, predictions on fixed frames."""
    model = create_model(_rnn_config(flags)).build_for_config()
    rng = np.random.default_rng(2)
    for var in model.tf1_weights().values():
        var.assign(rng.normal(0, 0.5, var.shape).astype(np.float32))
    inputs = {"video_matrix": rng.normal(size=[3, 5, 3]).astype(np.float32),
              "num_frames": np.array([5, 2, 4], np.int32)}
    path = checkpoint.save(str(train_dir), training_state(model, None, 4, naming), 4)
    return path, model(inputs).numpy(), inputs


def _respelled(path, spelling, train_dir) -> tuple[str, list[str]]:
    """The checkpoint at ``path`` with its RNN variables renamed to ``spelling``."""
    tensors = {spelling.to_old(name): value
               for name, value in checkpoint.read_checkpoint(path).items()}
    return checkpoint.save(str(train_dir), tensors, 4), sorted(tensors)


@pytest.mark.parametrize("spelling", [TF1_0, TF0_12], ids=lambda s: s.name)
@pytest.mark.parametrize("model_id", list(RNN_MODELS))
def test_old_rnn_spellings_load_with_equal_predictions(model_id, spelling, tmp_path):
    flags, naming = RNN_MODELS[model_id]
    path, want, inputs = _saved_rnn_checkpoint(tmp_path / "current", flags, naming)
    old_path, old_names = _respelled(path, spelling, tmp_path / "old")
    assert any(f in name for f in OLD_FRAGMENTS[spelling] for name in old_names)
    assert not any(name.endswith(("/kernel", "/bias")) for name in old_names)
    assert detect_naming(old_names).spelling is spelling
    # No --lstm_variant: the names choose the starter's graph where they are its.
    predictor = Predictor(_rnn_config({"model": flags["model"]}))
    assert predictor.restore(old_path) == 4
    assert predictor.model_config.lstm_variant == flags.get("lstm_variant", "willow")
    np.testing.assert_array_equal(predictor(inputs).numpy(), want)


@pytest.mark.parametrize("model_id", ["willow-gru", "starter-lstm"])
def test_continued_run_writes_the_old_spelling_back(model_id, tmp_path):
    flags, naming = RNN_MODELS[model_id]
    path, _, _ = _saved_rnn_checkpoint(tmp_path / "current", flags, naming)
    old_path, old_names = _respelled(path, TF0_12, tmp_path / "train_dir")
    trainer = Trainer(TrainConfig(train_dir=str(tmp_path / "train_dir"), train_data_pattern=""),
                      _rnn_config({"model": flags["model"]}))
    assert trainer.restore_latest() == old_path
    saved = checkpoint.read_checkpoint(trainer.save())
    assert set(old_names) <= set(saved)  # model variables under their old names
    assert detect_naming(saved).spelling is TF0_12 and detect_naming(saved).origin is naming.origin
    assert not any(name.endswith(("/kernel", "/bias")) or "kernel/" in name for name in saved)
    assert any(name.endswith("Linear/Matrix/Adam_1") for name in saved)


# --- naming round trips --------------------------------------------------------

@pytest.mark.parametrize("stored, port, origin", [
    ("tower/gates/weights", "gates/weights", "starter2017"),
    ("tower/experts/biases/RMSProp_1", "experts/biases/RMSProp_1", "starter2017"),
    ("beta1_power", "model/beta1_power", "starter2017"),
    ("global_step", "global_step", "starter2017"),
    ("tower/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/weights",
     "rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel", "starter2017"),
    ("RNN/RNN/MultiRNNCell/Cell1/GRUCell/Candidate/Linear/Bias",
     "RNN/rnn/multi_rnn_cell/cell_1/gru_cell/candidate/bias", "willow"),
    ("model/beta2_power", "model/beta2_power", "willow"),
    ("hidden1_weights", "hidden1_weights", "willow"),
])
def test_naming_round_trip(stored, port, origin):
    names = [stored, "tower/gates/weights"] if origin == "starter2017" else [stored]
    naming = detect_naming(names)
    assert naming.origin.NAME == origin
    assert naming.to_port(stored) == port
    assert naming.to_stored(port) == stored


def test_current_names_are_the_ports():
    naming = detect_naming(["RNN/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel",
                            "gates/weights", "model/beta1_power"])
    assert naming == PORT_NAMING and naming.spelling is CURRENT


def test_mismatch_names_the_stored_variables(tmp_path):
    tensors = {k: v for k, v in _starter_lstm_tensors().items() if "experts/biases" not in k}
    path = checkpoint.save(str(tmp_path), tensors, 7)
    predictor = Predictor(_rnn_config({"model": "LstmModel"}).replace(num_classes=CLASSES))
    with pytest.raises(checkpoint.CheckpointError, match="missing variables: tower/experts/biases"):
        predictor.restore(path)
    assert tf.io.gfile.exists(path + ".index")


def test_stored_tensors_are_read_only_when_asked_for(tmp_path, monkeypatch):
    from youtube8m_willow import checkpoint as ckpt

    path = ckpt.save(str(tmp_path), {"a": tf.reshape(tf.range(6.0), [2, 3]),
                                     "global_step": tf.constant(3, tf.int64)}, 3)
    stored = ckpt.StoredTensors(path)
    reads = []
    monkeypatch.setattr(tf.raw_ops, "RestoreV2",
                        lambda **kw: reads.append(kw["tensor_names"]) or [tf.constant(0)])
    assert "a" in stored and "b" not in stored and sorted(stored) == ["a", "global_step"]
    assert stored.shapes == {"a": (2, 3), "global_step": ()}
    assert reads == []  # membership, names and shapes come from the index
    stored["a"]
    assert reads == [["a"]]


def test_weights_to_be_restored_skip_only_the_random_initializers():
    from youtube8m_willow.layers.core import Dense
    from youtube8m_willow.layers.gating import ContextGating

    with weights_to_be_restored():
        dense, gating = Dense(3), ContextGating(add_batch_norm=True)
        dense.build((None, 4))
        gating.build((None, 5))
    assert not np.any(dense.kernel.numpy()) and not np.any(gating.gating_weights.numpy())
    assert np.all(gating.batch_norm.gamma.numpy() == 1.0)  # constant initializers kept
    later = Dense(3)
    later.build((None, 4))
    assert np.any(later.kernel.numpy())  # the context ended


# The flags that add or drop weights, each away from its default.
OTHER_WEIGHTS = dict(gating=True, moe_prob_gating=True, moe_low_rank_gating=4,
                     netvlad_add_batch_norm=False, dbof_add_batch_norm=False,
                     fv_couple_weights=False, fc_dimred=False, lstm_variant="starter")


@pytest.mark.parametrize("options", [{}, OTHER_WEIGHTS], ids=["defaults", "other_weights"])
@pytest.mark.parametrize("name", model_names())
def test_a_checkpoint_names_every_weight_of_every_model(name, options):
    """No weight keeps its stand-in zeros (``weights_to_be_restored``): a
    restore assigns every name of ``tf1_weights()`` (or fails), and those
    names cover all of a model's weights."""
    with weights_to_be_restored():
        model = create_model(small(name, frame_features=is_frame_level(name), lstm_cells=3,
                                   gru_cells=3, **options)).build_for_config()
    named = {id(variable) for variable in model.tf1_weights().values()}
    assert model.weights
    assert [w.path for w in model.weights if id(w) not in named] == []
    assert len(named) == len(model.weights)


# --- inference's start: the first batch read while the weights load -------------

def _video_train_dir(tmp_path):
    """A train_dir with a random LogisticModel's checkpoint (global step 4),
    records of 20 videos, the eval config over them and the model."""
    from youtube8m_willow.evaluation import EvalConfig

    config = ModelConfig(model="LogisticModel", num_classes=CLASSES,
                         feature_names=("mean_rgb", "mean_audio"), feature_sizes=FEATURES)
    model = create_model(config).build_for_config()
    rng = np.random.default_rng(4)
    for var in model.tf1_weights().values():
        var.assign(rng.normal(0, 0.5, var.shape).astype(np.float32))
    train_dir = tmp_path / "train_dir"
    checkpoint.save(str(train_dir), training_state(model, None, 4, PORT_NAMING), 4)
    pattern = write_synthetic_dataset(str(tmp_path / "data"), num_videos=20, num_classes=CLASSES,
                                      num_shards=2, feature_sizes=FEATURES,
                                      video_level=True)["video"]
    eval_config = EvalConfig(train_dir=str(train_dir), data_pattern=pattern, batch_size=8)
    return eval_config, config, model


def test_inference_reads_its_first_batch_while_the_weights_load(tmp_path, monkeypatch):
    """The weights load in a thread of their own while the first batch is
    read; the predictor and the batches are those of the plain path, every
    video once, in order."""
    from youtube8m_willow import prediction

    eval_config, config, model = _video_train_dir(tmp_path)
    load, real_eval_dataset, threads = prediction.Predictor.load, prediction.eval_dataset, []
    reader_built = threading.Event()

    def load_once_the_reader_is_built(self, path):
        threads.append(threading.current_thread())
        assert reader_built.wait(60), "the reader was not built while the weights loaded"
        return load(self, path)

    monkeypatch.setattr(prediction.Predictor, "load", load_once_the_reader_is_built)
    monkeypatch.setattr(prediction, "eval_dataset", lambda *args: (
        real_eval_dataset(*args), reader_built.set())[0])
    predictor, eval_input = prediction.restored_predictor_and_input(eval_config, config)
    assert threads and threads[0] is not threading.main_thread()
    assert predictor.path.endswith("model.ckpt-4")
    for name, var in predictor.model.tf1_weights().items():
        np.testing.assert_array_equal(var.numpy(), model.tf1_weights()[name].numpy())
    batches = list(eval_input.batches)
    ids = [i.decode() for batch in batches for i in batch["video_ids"].numpy()]
    plain = [i.decode() for batch in prediction.eval_dataset(eval_config, config)
             for i in batch["video_ids"].numpy()]
    assert len(ids) == 20 and ids == plain
    csv = tmp_path / "predictions.csv"
    _, eval_input = prediction.restored_predictor_and_input(eval_config, config)
    prediction.write_submission(predictor, eval_config, str(csv), eval_input=eval_input)
    plain_csv = tmp_path / "plain.csv"
    prediction.write_submission(prediction.restored_predictor(eval_config, config), eval_config,
                                str(plain_csv))
    assert csv.read_text() == plain_csv.read_text() and len(csv.read_text().splitlines()) == 21


def test_a_checkpoint_error_comes_before_the_readers(tmp_path):
    """A checkpoint that does not fit and records that do not exist: the
    checkpoint's error is raised, as when the weights were read first."""
    from youtube8m_willow import prediction

    eval_config, config, _ = _video_train_dir(tmp_path)
    missing = dataclasses.replace(eval_config, data_pattern=str(tmp_path / "none*.tfrecord"))
    with pytest.raises(checkpoint.CheckpointError, match="does not fit") as raised:
        prediction.restored_predictor_and_input(missing, config.replace(model="MoeModel"))
    assert raised.value.__suppress_context__  # one error, not the reader's beneath it
    with pytest.raises(DataError, match="none"):  # with a checkpoint that fits
        prediction.restored_predictor_and_input(missing, config)


# --- companions (the input state) ----------------------------------------------

def test_companions_are_in_place_before_the_index_and_rotate_with_it(tmp_path, monkeypatch):
    """A checkpoint is complete when its index exists: the companion files
    (the writer's mark among them) and then the data are renamed into place
    first, and rotation removes all."""
    order = []
    rename = tf.io.gfile.rename
    monkeypatch.setattr(tf.io.gfile, "rename", lambda old, new, overwrite=False: (
        order.append(os.path.basename(new).removeprefix("model.ckpt-")),
        rename(old, new, overwrite))[1])
    writer = checkpoint.CheckpointWriter(str(tmp_path), keep=1, not_model=is_optimizer_name)
    tensors = {"w": tf.ones([3]), "global_step": tf.constant(1, tf.int64)}
    writer.save(tensors, 1, {".input.json": "{}\n"})
    assert order[-1] == "checkpoint"  # the state file names it once it is complete
    assert order[-2] == "1.index"
    data = next(i for i, name in enumerate(order) if name.startswith("1.data-"))
    assert order.index("1.input.json") < data and order.index("1.writer.json") < data
    assert (tmp_path / "model.ckpt-1.input.json").read_text() == "{}\n"
    writer.save(tensors, 2, {".input.json": "{}\n"})
    assert sorted(p.name for p in tmp_path.glob("model.ckpt-1*")) == []
    assert (tmp_path / "model.ckpt-2.input.json").exists()


# --- rotation across runs --------------------------------------------------------

def _tensors(width: int, step: int, slots: bool = False) -> dict[str, tf.Tensor]:
    tensors = {"w": tf.ones([width]), "global_step": tf.constant(step, tf.int64)}
    if slots:  # another optimizer's slots: still the same model
        tensors["w/Adam"] = tf.zeros([width])
    return tensors


def _steps_with(train_dir, suffix: str) -> list[int]:
    return sorted(int(p.name.removeprefix("model.ckpt-").removesuffix(suffix))
                  for p in train_dir.glob(f"model.ckpt-*{suffix}"))


def test_rotation_spans_every_run_on_the_same_model(tmp_path):
    """A resumed run (a new writer) rotates the earlier runs' checkpoints of
    its model too; the original code's and another model's are kept."""
    checkpoint.save(str(tmp_path), _tensors(3, 0), 0)  # as the original code: no writer mark
    other_model = checkpoint.CheckpointWriter(str(tmp_path), keep=1, not_model=is_optimizer_name)
    for step in (1, 2):
        other_model.save(_tensors(4, step), step)
    first_run = checkpoint.CheckpointWriter(str(tmp_path), keep=2, not_model=is_optimizer_name)
    for step in (3, 4, 5):
        first_run.save(_tensors(3, step), step)
    assert checkpoint.checkpoint_steps(str(tmp_path)) == [0, 2, 4, 5]
    resumed_run = checkpoint.CheckpointWriter(str(tmp_path), keep=2, not_model=is_optimizer_name)
    resumed_run.save(_tensors(3, 6, slots=True), 6)
    assert checkpoint.checkpoint_steps(str(tmp_path)) == [0, 2, 5, 6]
    assert _steps_with(tmp_path, ".writer.json") == [2, 5, 6]  # rotated with the checkpoint
    assert (checkpoint.written_for(str(tmp_path / "model.ckpt-6"))
            == checkpoint.written_for(str(tmp_path / "model.ckpt-5"))
            != checkpoint.written_for(str(tmp_path / "model.ckpt-2")))
    assert checkpoint.written_for(str(tmp_path / "model.ckpt-0")) is None
    state = (tmp_path / "checkpoint").read_text().splitlines()
    assert state[0] == 'model_checkpoint_path: "model.ckpt-6"'
    assert state[1:] == [f'all_model_checkpoint_paths: "model.ckpt-{s}"' for s in (0, 2, 5, 6)]


def test_the_checkpoint_just_written_is_kept_below_a_newer_one(tmp_path):
    """A run resumed from an older checkpoint (the state file named it) never
    deletes what it just wrote: it counts as the newest."""
    first = checkpoint.CheckpointWriter(str(tmp_path), keep=1, not_model=is_optimizer_name)
    first.save(_tensors(3, 9), 9)
    resumed = checkpoint.CheckpointWriter(str(tmp_path), keep=1, not_model=is_optimizer_name)
    assert resumed.save(_tensors(3, 4), 4) == str(tmp_path / "model.ckpt-4")
    assert checkpoint.checkpoint_steps(str(tmp_path)) == [4]
    assert checkpoint.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-4")


def test_an_unreadable_writer_mark_is_never_deleted(tmp_path):
    writer = checkpoint.CheckpointWriter(str(tmp_path), keep=1, not_model=is_optimizer_name)
    writer.save(_tensors(3, 1), 1)
    (tmp_path / "model.ckpt-1.writer.json").write_text("not json")
    writer.save(_tensors(3, 2), 2)
    assert checkpoint.checkpoint_steps(str(tmp_path)) == [1, 2]


def test_a_first_write_interrupted_by_a_kill_does_not_block_a_restart(tmp_path):
    """Killed after the data of its first checkpoint were renamed in but
    before the index: the restart may start over (nothing complete was
    written); data files without this project's writer mark still count."""
    writer = checkpoint.CheckpointWriter(str(tmp_path), keep=1, not_model=is_optimizer_name)
    writer.save({"w": tf.ones([3]), "global_step": tf.constant(1, tf.int64)}, 1)
    (tmp_path / "model.ckpt-1.index").unlink()
    (tmp_path / "checkpoint").unlink()
    assert checkpoint.unusable_checkpoint_files(str(tmp_path)) == []
    (tmp_path / "model.ckpt-1.writer.json").unlink()
    assert checkpoint.unusable_checkpoint_files(str(tmp_path)) == [
        "model.ckpt-1.data-00000-of-00001"]


def test_eval_and_inference_read_frames_as_bytes_and_predict_as_from_floats(tmp_path):
    """The eval-order input keeps frame-level videos as their uint8 bytes (a
    quarter of the memory of a batch of floats); the predictor dequantizes
    them inside its compiled call (only the frames the model samples), and
    predicts what it predicts from the float frames (the L2 sums of the
    fewer frames may round apart by an ulp)."""
    from youtube8m_willow.data.readers import dequantize_frames
    from youtube8m_willow.evaluation import EvalConfig
    from youtube8m_willow.prediction import eval_dataset

    pattern = write_synthetic_dataset(str(tmp_path), num_videos=12, num_classes=CLASSES,
                                      num_shards=1, feature_sizes=FEATURES, max_frames=7,
                                      min_frames=1, video_level=False)["frame"]
    config = ModelConfig(model="NetVLADModelLF", num_classes=CLASSES, frame_features=True,
                         feature_names=("rgb", "audio"), feature_sizes=FEATURES, max_frames=7,
                         iterations=5, netvlad_cluster_size=4, netvlad_hidden_size=8,
                         gating=True, frame_sampling="uniform")
    batch = next(iter(eval_dataset(EvalConfig(train_dir="", data_pattern=pattern, batch_size=12),
                                   config)))
    assert batch["video_matrix"].dtype == tf.uint8
    predictor = Predictor(config)
    rng = np.random.default_rng(3)
    for weight in predictor.model.weights:
        value = rng.normal(0, 0.5, weight.shape)
        weight.assign(np.abs(value) + 0.5 if "variance" in weight.path else value)
    floats = {"video_matrix": dequantize_frames(batch["video_matrix"], batch["feature_frames"],
                                                FEATURES),
              "num_frames": batch["num_frames"], "video_ids": batch["video_ids"]}
    from_bytes, from_floats = predictor(batch).numpy(), predictor(floats).numpy()
    assert from_bytes.shape == (12, CLASSES) and np.ptp(from_bytes) > 0.1
    np.testing.assert_allclose(from_bytes, from_floats, rtol=1e-6, atol=1e-7)
    predictor.videos_per_call = 5  # the bytes and their frame counts, in chunks of 5, 5, 2
    np.testing.assert_allclose(predictor(batch).numpy(), from_bytes, rtol=1e-6, atol=1e-7)
