"""The NeXtVLAD fork's numbers (SPEC section 16), reproduced through the
README's command lines: ``../shared/nextvlad_fixtures/nextvlad_small``
(inference to 1e-5) and ``train/nextvlad_train_adam`` (one more training
step, then inference to 2e-4). The original's flags alone select the model
and its input scaling; with no model flag at all, the train_dir and its
checkpoint do. A missing fixture fails the test (conftest ``shared_path``).

``tests/data/nextvlad_mixture`` and ``tests/data/nextvlad_moe`` (their
READMEs say how the fork made them) do the same for MixNeXtVladModel (every
term of its distillation loss) and for NeXtVLADModel with the fork's
MoeModel head (its default 4 experts, its L2 from --l2_penalty): inference,
and one training step.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
import shlex
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, read_submission, run_script, shared_path
from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.readers import ReaderConfig, make_dataset
from youtube8m_willow.metrics.eval_util import calculate_gap

README_BLOCK = re.compile(r"<!-- nextvlad commands: begin -->\n```\n(.*?)```", re.S)
SMALL = ("nextvlad_fixtures", "nextvlad_small")
TRAIN = ("nextvlad_fixtures", "train", "nextvlad_train_adam")


def _load(*parts):
    fixture = shared_path(*parts)
    return fixture, json.loads((fixture / "meta.json").read_text())


def _predictions(csv, meta) -> np.ndarray:
    rows = read_submission(csv)
    assert list(rows) == meta["video_ids"], "every video once, in record order"
    predictions = np.zeros([len(rows), meta["num_classes"]], np.float32)
    for i, pairs in enumerate(rows.values()):
        assert len(pairs) == meta["num_classes"]
        for label, score in pairs:
            predictions[i, label] = score
    return predictions


def _readme_commands(tmp_path) -> list[list[str]]:
    """The README's NeXtVLAD block as argument lists, its shell variables
    expanded, /tmp/ paths moved into ``tmp_path``."""
    block = README_BLOCK.search((REPO / "README.md").read_text()).group(1)
    variables, commands = {}, []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.replace("/tmp/", f"{tmp_path}/")
        for name, value in variables.items():
            line = line.replace(f"${name}", value)
        assignment = re.fullmatch(r"(\w+)=(\S+)", line.strip())
        if assignment:
            variables[assignment.group(1)] = str((REPO / assignment.group(2)).resolve())
        else:
            commands += [shlex.split(part) for part in line.split("&&") if part.strip()]
    return commands


def _run_readme(tmp_path) -> dict[str, str]:
    """Runs the README's commands: ``cp -r`` copies, ``chmod -R u+w`` makes
    the copy writable, ``python <script>`` runs the script (in-process).
    Returns each script run's logs, by its output file or train_dir."""
    logs = {}
    for command in _readme_commands(tmp_path):
        if command[:2] == ["cp", "-r"]:
            shutil.copytree(command[2], command[3])
            continue
        if command[:3] == ["chmod", "-R", "u+w"]:
            for path in [Path(command[3]), *Path(command[3]).rglob("*")]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
            continue
        assert command[0] == "python", command
        result = run_script(command[1], *command[2:])
        target = next(arg.split("=", 1)[1] for arg in command
                      if arg.startswith(("--output_file=", "--train_dir=")))
        logs[f"{command[1]} {target}"] = result.stderr
    return logs


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nextvlad_readme")
    return folder, _run_readme(folder)


def test_readme_commands_are_the_fixtures(tmp_path):
    """The README's command lines are the fixtures' own: their model flags
    (and, for training, its training flags) and the common ones."""
    commands = _readme_commands(tmp_path)
    assert [c[0] if c[0] != "python" else c[1] for c in commands] == [
        "inference.py", "cp", "chmod", "train.py", "inference.py"]
    _, small = _load(*SMALL)
    _, train = _load(*TRAIN)
    assert commands[0][-len(small["model_flags"]):] == small["model_flags"]
    assert commands[3][-len(train["model_flags"]):] == train["model_flags"]
    assert f"--max_steps={train['checkpoint_step'] + 1}" in commands[3]
    assert f"--batch_size={train['batch_size']}" in commands[3]


def test_inference_reproduces_the_forks_predictions(readme_run):
    folder, _ = readme_run
    fixture, meta = _load(*SMALL)
    predictions = _predictions(folder / "nextvlad_small.csv", meta)
    np.testing.assert_allclose(predictions, np.load(fixture / "expected_predictions.npy"),
                               atol=1e-5, rtol=0)


def test_training_continues_the_forks_run(readme_run):
    folder, logs = readme_run
    fixture, meta = _load(*TRAIN)
    step = meta["checkpoint_step"] + 1
    log = logs[f"train.py {folder}/nextvlad_train"]
    line = log.split(f"training step {step} | ")[1].splitlines()[0]
    assert float(line.split("Loss: ")[1].split()[0]) == pytest.approx(
        meta["label_loss_of_checked_step"], abs=0.005)
    assert float(line.split("Total loss: ")[1]) == pytest.approx(meta["loss_of_checked_step"],
                                                                 rel=1e-4)
    # The graph's training flags agree with those given: no flag changes the run.
    assert "changes the run's" not in log
    predictions = _predictions(folder / "nextvlad_train.csv", meta)
    np.testing.assert_allclose(predictions, np.load(fixture / "expected_predictions.npy"),
                               atol=2e-4, rtol=0)
    # The continued run keeps the fork's names (tower/, its Adam slots).
    written = checkpoint.read_checkpoint(str(folder / "nextvlad_train" / f"model.ckpt-{step}"))
    assert set(written) == set(meta["variables"])


def _serialized(path) -> list[bytes]:
    return [record.numpy() for record in tf.data.TFRecordDataset(str(path))]


def test_export_computes_what_eval_computes(readme_run):
    """The continued run's SavedModel scales its input as training and eval
    do (the fork's export L2-normalized instead): served on the records, it
    gives the original's predictions (each video's top 20)."""
    folder, _ = readme_run
    fixture, meta = _load(*TRAIN)
    export = folder / "nextvlad_train" / "export" / f"step_{meta['checkpoint_step'] + 1}"
    serve = tf.saved_model.load(str(export)).signatures["serving_default"]
    served = serve(example_bytes=tf.constant(_serialized(fixture / "data.tfrecord")))
    expected = np.load(fixture / "expected_predictions.npy")
    assert [v.decode() for v in served["video_id"].numpy()] == meta["video_ids"]
    top = np.take_along_axis(expected, served["class_indexes"].numpy(), axis=1)
    np.testing.assert_allclose(served["predictions"].numpy(), top, atol=2e-4, rtol=0)
    np.testing.assert_allclose(np.sort(expected, 1)[:, ::-1][:, :20],
                               served["predictions"].numpy(), atol=2e-4, rtol=0)


def test_the_train_dir_alone_selects_the_model(tmp_path):
    """No model flag: the fork's model_flags.json names the model and its
    features, the checkpoint's shapes its sizes and head, and the model's
    own input scaling (eigen) applies."""
    fixture, meta = _load(*SMALL)
    out = tmp_path / "out.csv"
    result = run_script("inference.py", f"--train_dir={fixture / 'train_dir'}",
                        f"--input_data_pattern={fixture / 'data.tfrecord'}",
                        f"--output_file={out}", f"--top_k={meta['num_classes']}")
    assert ("holds the model with l2_penalty=1e-05, nextvlad_cluster_size=8, "
            "nextvlad_hidden_size=32, num_classes=50, "
            "video_level_classifier_model=LogisticModel") in result.stderr
    assert f"the graph {fixture / 'train_dir'}/model.ckpt-123.meta was built with " \
           "--drop_rate=0.5, --l2_penalty=1e-05" in result.stderr
    np.testing.assert_allclose(_predictions(out, meta),
                               np.load(fixture / "expected_predictions.npy"), atol=1e-5, rtol=0)


def test_l2_scaling_is_not_the_forks(tmp_path):
    """--input_scaling=l2 (what the fork's export computed) gives other
    numbers: the scaling is what makes the match."""
    fixture, meta = _load(*SMALL)
    out = tmp_path / "l2.csv"
    run_script("inference.py", f"--train_dir={fixture / 'train_dir'}",
               f"--input_data_pattern={fixture / 'data.tfrecord'}", f"--output_file={out}",
               f"--top_k={meta['num_classes']}", "--input_scaling=l2", *meta["model_flags"])
    difference = np.abs(_predictions(out, meta) - np.load(fixture / "expected_predictions.npy"))
    assert difference.max() > 0.05


def _labels(data, meta) -> np.ndarray:
    config = ModelConfig(model="NeXtVLADModel", num_classes=meta["num_classes"],
                         feature_names=("rgb", "audio"), feature_sizes=(1024, 128),
                         frame_features=True)
    dataset = make_dataset(str(data), ReaderConfig.for_model(config), 100, training=False,
                           num_epochs=1, num_readers=1)
    return next(iter(dataset))["labels"].numpy().astype(np.float32)


def test_eval_scores_the_forks_predictions(tmp_path):
    """eval.py on the fork's train_dir: the GAP of the original's
    predictions, and Avg_Loss with the fork's cross entropy (epsilon 1e-8)."""
    fixture, meta = _load(*SMALL)
    train_dir = tmp_path / "train_dir"
    shutil.copytree(fixture / "train_dir", train_dir)
    result = run_script("eval.py", f"--train_dir={train_dir}", "--run_once=True",
                        f"--eval_data_pattern={fixture / 'data.tfrecord'}")
    line = result.stderr.split("epoch/eval number 123 | ")[1].splitlines()[0]
    expected = np.load(fixture / "expected_predictions.npy")
    labels = _labels(fixture / "data.tfrecord", meta)
    assert float(line.split("GAP: ")[1].split()[0]) == pytest.approx(
        calculate_gap(expected, labels), abs=1e-4)
    loss = -(labels * np.log(expected + 1e-8) + (1 - labels) * np.log(1 - expected + 1e-8))
    assert float(line.split("Avg_Loss: ")[1].split()[0]) == pytest.approx(
        loss.sum(1).mean(), rel=1e-4)


def test_num_gpu_towers_make_the_same_step(tmp_path):
    """--batch_size=12 --num_gpu=2 is the fork's two towers of 12: the same
    24 examples a step and learning-rate schedule as the original's
    --batch_size=24 run, so the same numbers."""
    fixture, meta = _load(*TRAIN)
    train_dir = tmp_path / "train_dir"
    shutil.copytree(fixture / "train_dir", train_dir)
    step = meta["checkpoint_step"] + 1
    flags_ = [f for f in meta["model_flags"] if f not in meta["train_flags"]]
    result = run_script(
        "train.py", f"--train_dir={train_dir}",
        f"--train_data_pattern={fixture / 'data.tfrecord'}", "--batch_size=12", "--num_gpu=2",
        f"--max_steps={step}", "--num_epochs=1", f"--num_classes={meta['num_classes']}",
        *flags_)
    assert "--batch_size=12 " in result.stderr.split("continuing the original run")[1]
    assert "changes the run's" not in result.stderr
    line = result.stderr.split(f"training step {step} | ")[1].splitlines()[0]
    assert float(line.split("Total loss: ")[1]) == pytest.approx(meta["loss_of_checked_step"],
                                                                 rel=1e-4)
    out = tmp_path / "after.csv"
    run_script("inference.py", f"--train_dir={train_dir}",
               f"--input_data_pattern={fixture / 'data.tfrecord'}", f"--output_file={out}",
               f"--top_k={meta['num_classes']}")
    np.testing.assert_allclose(_predictions(out, meta),
                               np.load(fixture / "expected_predictions.npy"), atol=2e-4, rtol=0)


# ---------------------------------------------------------------- the mixture

RUNS = ["nextvlad_mixture", "nextvlad_moe"]


def recipe(name: str, shape) -> np.ndarray:
    """The fixture's value of a checkpoint variable, from its name by integer
    hashing (the same on every machine): weights ``k / 16 / sqrt(fan_in)``
    (the classifiers' ``k / 2 / sqrt(fan_in)``), biases ``k / 256``, gammas
    and variances ``[0.5, 1.5)``, betas and means ``k / 64``, Adam's ``m``
    ``k * 1e-4`` and ``v`` ``(u + 1) * 2e-8``, for ``k`` in -16..16, ``u``
    in 0..63."""
    shape = tuple(int(s) for s in shape)
    index = np.arange(int(np.prod(shape)) if shape else 1, dtype=np.uint64)
    h = (index * np.uint64(2654435761) + np.uint64(zlib.crc32(name.encode()))) % np.uint64(2 ** 32)
    h = ((h ^ (h >> np.uint64(13))) * np.uint64(1274126177)) % np.uint64(2 ** 32)
    k = (h % np.uint64(33)).astype(np.int64) - 16
    u = ((h >> np.uint64(8)) % np.uint64(64)).astype(np.int64)
    leaf = name.split("/")[-1]
    if leaf == "Adam":
        value = k * 1e-4
    elif leaf == "Adam_1":
        value = (u + 1) * 2e-8
    elif leaf in ("gamma", "moving_variance"):
        value = (u + 32) / 64.0
    elif leaf in ("beta", "moving_mean"):
        value = k / 64.0
    elif leaf == "biases":
        value = k / 256.0
    else:
        fan_in = shape[-2] if len(shape) >= 2 else shape[0]
        classifier = name.endswith("fully_connected/weights") and "vlad" not in name.lower()
        value = k / (2.0 if classifier else 16.0) / np.sqrt(fan_in)
    return value.astype(np.float32).reshape(shape)


def _mixture_train_dir(folder, meta) -> Path:
    """The fork's checkpoint rebuilt from the recipe, with the partial
    model_flags.json its train.py writes."""
    step = meta["checkpoint_step"]
    tensors = {}
    for name, shape in meta["variables"].items():
        if name == "global_step":
            tensors[name] = np.int64(step)
        elif name in ("beta1_power", "beta2_power"):
            beta = 0.9 if name == "beta1_power" else 0.999
            tensors[name] = np.float32(beta ** (step + 1))
        else:
            tensors[name] = recipe(name, shape)
    train_dir = folder / "train_dir"
    checkpoint.save(str(train_dir), tensors, step)
    (train_dir / "model_flags.json").write_text(json.dumps(meta["model_flags_json"]))
    return train_dir


def _scalars(directory) -> dict[str, dict[int, float]]:
    scalars: dict[str, dict[int, float]] = {}
    for path in Path(directory).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


@pytest.mark.parametrize("name", RUNS)
def test_inference_reproduces_the_forks_run(name, tmp_path):
    fixture = REPO / "tests" / "data" / name
    meta = json.loads((fixture / "meta.json").read_text())
    train_dir = _mixture_train_dir(tmp_path, meta)
    out = tmp_path / "before.csv"
    run_script("inference.py", f"--train_dir={train_dir}",
               f"--input_data_pattern={fixture / 'data.tfrecord'}", f"--output_file={out}",
               f"--top_k={meta['num_classes']}", f"--num_classes={meta['num_classes']}",
               *meta["model_flags"])
    np.testing.assert_allclose(_predictions(out, meta),
                               np.load(fixture / "expected_predictions_before.npy"),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", RUNS)
def test_training_step_is_the_forks(name, tmp_path):
    """One more step of the fork's run: the label loss it logs (the
    mixture's: mixture and branches), the regularization (model/reg_loss:
    the mixture's distillation term and the L2 terms), the total, and the
    predictions after the step."""
    fixture = REPO / "tests" / "data" / name
    meta = json.loads((fixture / "meta.json").read_text())
    terms = meta["loss_terms_of_checked_step"]
    train_dir = _mixture_train_dir(tmp_path, meta)
    step = meta["checkpoint_step"] + 1
    result = run_script(
        "train.py", f"--train_dir={train_dir}", f"--train_data_pattern={fixture / 'data.tfrecord'}",
        f"--batch_size={meta['batch_size']}", f"--max_steps={step}", "--num_epochs=1",
        f"--num_classes={meta['num_classes']}", *meta["model_flags"], *meta["train_flags"])
    line = result.stderr.split(f"training step {step} | ")[1].splitlines()[0]
    assert float(line.split("Total loss: ")[1]) == pytest.approx(terms["total_loss"], rel=1e-5)
    assert terms["label_loss"] == pytest.approx(
        sum(v for k, v in terms.items() if k.startswith("xent_")), rel=1e-6)
    scalars = _scalars(train_dir)
    assert scalars["model/label_loss"][step] == pytest.approx(terms["label_loss"], rel=1e-5)
    assert scalars["model/reg_loss"][step] == pytest.approx(
        terms.get("distillation", 0.0) + terms["l2_sum"], rel=1e-4)
    out = tmp_path / "after.csv"
    run_script("inference.py", f"--train_dir={train_dir}",
               f"--input_data_pattern={fixture / 'data.tfrecord'}", f"--output_file={out}",
               f"--top_k={meta['num_classes']}")
    np.testing.assert_allclose(_predictions(out, meta),
                               np.load(fixture / "expected_predictions_after.npy"),
                               atol=2e-5, rtol=0)
    written = checkpoint.read_checkpoint(str(train_dir / f"model.ckpt-{step}"))
    assert set(written) == set(meta["variables"])


GRAPH_FLAGS = ("drop_rate", "l2_penalty", "cl_temperature", "cl_lambda")


def _flag_values(flags_: list[str]) -> dict:
    values = dict(flag[2:].split("=", 1) for flag in flags_ if flag.startswith("--"))
    return {name: float(values[name]) for name in GRAPH_FLAGS if name in values}


def test_the_training_graphs_hold_the_training_only_model_flags(tmp_path):
    """The fork's .meta training graphs give --drop_rate, --l2_penalty and
    the mixture's --cl_temperature and --cl_lambda as the runs had them."""
    from youtube8m_willow.legacy.meta_graph import read_graph_facts

    graphs = {}
    for parts in (SMALL, TRAIN):
        fixture, meta = _load(*parts)
        meta_file = next((fixture / "train_dir").glob("model.ckpt-*.meta"))
        graphs[meta_file] = _flag_values(meta["model_flags"])
    mixture = tmp_path / "mixture.meta"
    mixture.write_bytes(gzip.decompress(
        (REPO / "tests" / "data" / "nextvlad_mixture" / "train_graph.meta.gz").read_bytes()))
    graphs[mixture] = {"drop_rate": 0.3, "l2_penalty": 3e-4, "cl_temperature": 2.5,
                       "cl_lambda": 7.0}
    assert [flags_["drop_rate"] for flags_ in graphs.values()] == [0.5, 0.0, 0.3]
    for path, expected in graphs.items():
        facts = read_graph_facts(str(path)).as_flags()
        assert {name: facts[name] for name in expected} == expected, path
        if "cl_lambda" not in expected:  # a NeXtVLADModel: no distillation
            assert "cl_lambda" not in facts and "cl_temperature" not in facts


def test_a_continued_fork_run_takes_its_training_only_flags_from_the_graph(tmp_path):
    """Without --drop_rate and --l2_penalty, the model of a continued fork
    run has the values its graph holds, not the fork's defaults."""
    from youtube8m_willow.models import original_train_dir

    fixture, meta = _load(*TRAIN)
    given = [f for f in meta["model_flags"]
             if not f.startswith(("--drop_rate", "--l2_penalty"))]
    values = dict(f[2:].split("=", 1) for f in given)
    config = ModelConfig(
        model=values["model"], frame_features=True, feature_names=("rgb", "audio"),
        feature_sizes=(1024, 128), num_classes=meta["num_classes"],
        nextvlad_cluster_size=int(values["nextvlad_cluster_size"]),
        nextvlad_hidden_size=int(values["nextvlad_hidden_size"]),
        groups=int(values["groups"]), expansion=int(values["expansion"]),
        gating_reduction=int(values["gating_reduction"]), drop_rate=0.5, l2_penalty=1e-5,
        video_level_classifier_model="LogisticModel")
    path = str(fixture / "train_dir" / f"model.ckpt-{meta['checkpoint_step']}")
    resolved = original_train_dir.resolve(config, path, frozenset({"drop_rate", "l2_penalty"}))
    assert (resolved.drop_rate, resolved.l2_penalty) == (0.0, 1e-3)
    # Given flags win: a field not free is left as it is.
    kept = original_train_dir.resolve(config, path, frozenset())
    assert (kept.drop_rate, kept.l2_penalty) == (0.5, 1e-5)
