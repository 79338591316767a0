"""Distributed training: two worker processes (MultiWorkerMirroredStrategy
over 127.0.0.1) and two logical CPU devices (MirroredStrategy) must train
exactly what one process trains on the same global batches.

Why the comparison is meaningful: the data is one file read in order
(``--shuffle=False``), so every run sees the same global batches of 16
videos: with two workers and fewer files than workers, each worker reads the
file and keeps every other 8-video batch (worker 0 batches 0, 2, 4, ...;
worker 1 batches 1, 3, ...); with two local replicas, consecutive 8-video
batches go to the replicas in turn. 72 videos make 4 full global batches and
a last one of 8, which leaves one replica without examples. The model (MoE,
no batch norm) with a strong L2 penalty (--moe_l2=0.5) and a small clip norm
checks the loss scaling (global-batch mean, regularization once), the
gradient sum across replicas, clipping after that sum, and the empty-replica
step. Weights and Adam slots must match the single process to float
rounding.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import forked
from conftest import REPO, fed_videos
from youtube8m_willow import checkpoint
from youtube8m_willow.config import ModelConfig
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.training import distribute, updates
from youtube8m_willow.training.trainer import TrainConfig, train

NUM_CLASSES = 12
STEPS = 5  # 72 videos / 16: 4 full global batches, then 8 videos
MODEL_FLAGS = ["--model=MoeModel", "--feature_names=mean_rgb,mean_audio",
               "--feature_sizes=1024,128", f"--num_classes={NUM_CLASSES}", "--moe_l2=0.5"]
TRAIN_FLAGS = ["--batch_size=16", "--num_epochs=1", "--shuffle=False", "--num_readers=1",
               "--clip_gradient_norm=0.05", "--export_model_steps=0"]
MODEL = ModelConfig(model="MoeModel", num_classes=NUM_CLASSES,
                    feature_names=("mean_rgb", "mean_audio"), feature_sizes=(1024, 128),
                    moe_l2=0.5)
TIMEOUT = 120


def _train_config(train_dir, data, **changes) -> TrainConfig:
    values = dict(train_dir=str(train_dir), train_data_pattern=data, batch_size=16,
                  num_epochs=1, shuffle=False, num_readers=1, clip_gradient_norm=0.05,
                  export_model_steps=0, max_steps=STEPS)
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The data, the initial weights (a step-0 checkpoint every run starts
    from) and the single-process reference run."""
    root = tmp_path_factory.mktemp("distributed")
    data = write_synthetic_dataset(str(root / "data"), num_videos=72, num_classes=NUM_CLASSES,
                                   num_shards=1, frame_level=False)["video"]
    initial = root / "initial"
    train(_train_config(initial, data, max_steps=0, seed=3), MODEL)
    single = root / "single"
    shutil.copytree(initial, single)
    result = train(_train_config(single, data), MODEL)
    assert result.global_step == STEPS
    return {"root": root, "data": data, "initial": initial, "single": single}


def _assert_same_state(train_dir, reference_dir, atol=1e-5):
    ours = checkpoint.read_checkpoint(checkpoint.latest_checkpoint(str(train_dir)))
    reference = checkpoint.read_checkpoint(checkpoint.latest_checkpoint(str(reference_dir)))
    assert sorted(ours) == sorted(reference)
    assert int(ours["global_step"]) == STEPS
    for name, value in reference.items():
        np.testing.assert_allclose(ours[name], value, atol=atol, rtol=1e-5, err_msg=name)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _start_cluster(commands, log_dir):
    """Starts one process per command, as the workers of one cluster
    (``TF_CONFIG`` over loopback); each logs to ``log_dir/worker<i>.log``."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(len(commands))]
    processes = []
    for index, command in enumerate(commands):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config),
               "PYTHONPATH": str(REPO)}
        with open(log_dir / f"worker{index}.log", "w") as log:
            processes.append(forked.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                                          env=env, cwd=str(REPO)))
    return processes


def _start_workers(train_dirs, extra_flags, log_dir):
    """Starts one train.py per train_dir, as the workers of one cluster."""
    return _start_cluster([[sys.executable, str(REPO / "train.py"), f"--train_dir={train_dir}",
                            *MODEL_FLAGS, *extra_flags] for train_dir in train_dirs], log_dir)


def _finish(processes, log_dir, timeout=TIMEOUT) -> list[str]:
    """Waits for every process (killing all of them on timeout); returns their logs."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = [(log_dir / f"worker{i}.log").read_text() for i in range(len(processes))]
    failed = [f"worker {i} exited with {p.returncode}:\n{log[-3000:]}"
              for i, (p, log) in enumerate(zip(processes, logs)) if p.returncode != 0]
    assert not failed, "\n".join(failed)
    return logs


def _wait_for_log(path, text, processes, timeout=TIMEOUT) -> None:
    """Waits until ``text`` is in the log at ``path``; fails if a process ends first."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} did not appear in {path} in time"
        assert all(p.poll() is None for p in processes), path.read_text()[-3000:]
        time.sleep(0.2)


def test_two_workers_train_like_one_process(runs):
    chief_dir, worker_dir = runs["root"] / "chief", runs["root"] / "worker"
    shutil.copytree(runs["initial"], chief_dir)
    logs_dir = runs["root"]
    logs = _finish(_start_workers([chief_dir, worker_dir],
                                  [f"--train_data_pattern={runs['data']}", *TRAIN_FLAGS,
                                   f"--max_steps={STEPS + 10}"], logs_dir), logs_dir)
    for log in logs:  # both run the 5 global batches, then the data ends
        assert f"training step {STEPS} |" in log and "stopped (end_of_data)" in log
    _assert_same_state(chief_dir, runs["single"])
    assert (chief_dir / "model_flags.json").exists()
    assert list(chief_dir.glob("events.out.tfevents.*"))
    assert (chief_dir / "export" / f"step_{STEPS}").is_dir()
    assert not worker_dir.exists()  # the worker writes nothing


def test_signal_to_a_worker_stops_every_worker_at_one_step(runs):
    chief_dir, worker_dir = runs["root"] / "chief_stopped", runs["root"] / "worker_stopped"
    logs_dir = runs["root"] / "stopped_logs"
    logs_dir.mkdir()
    processes = _start_workers([chief_dir, worker_dir],
                               [f"--train_data_pattern={runs['data']}", "--batch_size=16",
                                "--num_epochs=0", "--num_readers=1", "--export_model_steps=0"],
                               logs_dir)
    try:
        _wait_for_log(logs_dir / "worker1.log", "training step 3 |", processes)
        processes[1].send_signal(signal.SIGTERM)
    finally:
        logs = _finish(processes, logs_dir)
    said = "checkpointing and exporting at global step "
    stopped = [int(log.split(said)[1].split()[0]) for log in logs]
    assert stopped[0] == stopped[1] >= 3
    assert "received SIGTERM" in logs[1] and "a stop request from another worker" in logs[0]
    latest = checkpoint.latest_checkpoint(str(chief_dir))
    assert checkpoint.step_of(latest) == stopped[0]
    assert not worker_dir.exists()


def test_two_workers_report_the_records_skipped_on_any_worker(tmp_path):
    """--skip_bad_records: a record damaged in worker 1's file (one file per
    worker) is counted in every worker's log, the chief's included."""
    data = write_synthetic_dataset(str(tmp_path / "data"), num_videos=32,
                                   num_classes=NUM_CLASSES, num_shards=2,
                                   frame_level=False)["video"]
    second = sorted(tmp_path.glob("data/video/*.tfrecord"))[1]
    content = second.read_bytes()
    second.write_bytes(content[: len(content) // 2 + 100])  # cut inside a record
    logs = _finish(_start_workers([tmp_path / "chief", tmp_path / "worker"],
                                  [f"--train_data_pattern={data}", "--skip_bad_records=True",
                                   *TRAIN_FLAGS], tmp_path), tmp_path)
    for log in logs:
        assert "stopped (end_of_data)" in log
        assert "skipped or dropped input (all 2 workers): corrupt_records=1, " in log


_LEAVE_TOGETHER_SCRIPT = textwrap.dedent("""
    import logging, pathlib, sys, time
    from youtube8m_willow.training import distribute

    logging.basicConfig(level=logging.INFO)
    marker = pathlib.Path(sys.argv[1])
    strategy = distribute.select_strategy()
    chief = distribute.strategy_is_chief(strategy)
    if chief:  # late at the first barrier; the marker says it got there
        time.sleep(3)
        marker.write_text("chief at the barrier")
    distribute.leave_together(strategy)
    if not chief:
        print("marker after the barrier:", marker.exists(), file=sys.stderr)
    if chief:  # too late for the worker's 1-second second barrier
        time.sleep(5)
    distribute.leave_together(strategy, timeout_s=1)
""")


def test_leave_together_waits_for_every_worker_and_a_failed_wait_is_logged(tmp_path):
    """The end-of-run barrier: the worker passes it only after the chief got
    there (the chief writes a file first); a barrier that times out is a
    warning, and both processes still exit 0."""
    command = [sys.executable, "-c", _LEAVE_TOGETHER_SCRIPT, str(tmp_path / "marker")]
    chief_log, worker_log = _finish(_start_cluster([command, command], tmp_path), tmp_path)
    assert "marker after the barrier: True" in worker_log
    for log in (chief_log, worker_log):
        assert "the workers did not meet at the end of the run" in log


RESUME_FLAGS = ["--batch_size=16", "--num_epochs=3", "--num_readers=1", "--seed=4",
                "--save_checkpoint_secs=0", "--export_model_steps=0", "--verbosity=1",
                "--max_steps=12"]  # 72 videos x 3 epochs: 13.5 global batches


def test_two_workers_resume_exactly_after_one_is_killed(runs):
    """Shuffled, three epochs, fewer files than workers: worker 1 is killed
    with kill -9 mid-run, then the chief (blocked in the next collective);
    both restart. Every worker gets the same videos at every step as in the
    uninterrupted run, and the chief ends with the same weights."""
    root = runs["root"] / "resumed"
    flags = [f"--train_data_pattern={runs['data']}", *RESUME_FLAGS]
    reference = [root / "reference_chief", root / "reference_worker"]
    (root / "reference").mkdir(parents=True)
    reference_logs = _finish(_start_workers(reference, flags, root / "reference"),
                             root / "reference")
    dirs = [root / "chief", root / "worker"]
    (root / "killed").mkdir()
    processes = _start_workers(dirs, flags, root / "killed")
    try:
        _wait_for_log(root / "killed" / "worker1.log", "training step 4 |", processes)
        processes[1].kill()
        processes[1].wait()
        time.sleep(2)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    killed_logs = [(root / "killed" / f"worker{i}.log").read_text() for i in range(2)]
    stopped_at = checkpoint.step_of(checkpoint.latest_checkpoint(str(dirs[0])))
    assert 4 <= stopped_at < 12, killed_logs[0][-2000:]
    (root / "restarted").mkdir()
    logs = _finish(_start_workers(dirs, flags, root / "restarted"), root / "restarted")
    assert "the input resumes at epoch" in logs[0]  # the chief's log
    for worker in range(2):
        fed = fed_videos([reference_logs[worker]])
        assert sorted(fed) == list(range(1, 13))
        seen = fed_videos([killed_logs[worker], logs[worker]])
        assert {step: fed[step] for step in seen} == seen
        # A step done just before the kill may have lost its log line (kill
        # -9 lands between the step's collective and the line); it is never
        # one the restarted run had to do again.
        last_logged = max(fed_videos([killed_logs[worker]]), default=0)
        assert set(fed) - set(seen) <= set(range(last_logged + 1, stopped_at + 1))
    ours = checkpoint.read_checkpoint(checkpoint.latest_checkpoint(str(dirs[0])))
    expected = checkpoint.read_checkpoint(checkpoint.latest_checkpoint(str(reference[0])))
    assert sorted(ours) == sorted(expected) and int(ours["global_step"]) == 12
    for name, value in expected.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, shutil, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from youtube8m_willow.config import ModelConfig
    from youtube8m_willow.training.trainer import TrainConfig, Trainer, train

    args = json.loads(sys.argv[1])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model = ModelConfig(**args["model"])
    config = dict(train_data_pattern=args["data"], batch_size=16, num_epochs=1, shuffle=False,
                  num_readers=1, clip_gradient_norm=0.05, export_model_steps=0, max_steps=5)
    shutil.copytree(args["initial"], args["train_dir"])
    result = train(TrainConfig(train_dir=args["train_dir"], **config), model, strategy)
    report = {"global_step": result.global_step}

    # Batch norm: each replica normalizes with its own batch; the moving
    # statistics (and every other weight) stay equal on both replicas.
    bn_model = ModelConfig(**{**args["model"], "moe_prob_gating": True})
    trainer = Trainer(TrainConfig(train_dir=args["bn_dir"], **config), bn_model, strategy)
    for batch, _ in zip(trainer.make_dataset(), range(3)):
        trainer.step(batch)
    copies = [strategy.experimental_local_results(v.value) for v in trainer.model.weights]
    report["replicas_differ"] = [v.path for v, (a, b) in zip(trainer.model.weights, copies)
                                 if not np.array_equal(a.numpy(), b.numpy())]
    moving = trainer.model.tf1_weights()["gating_prob_bn/moving_mean"]
    report["moving_mean_moved"] = bool(np.any(moving.numpy() != 0))
    try:
        Trainer(TrainConfig(train_dir=args["bn_dir"], **{**config, "batch_size": 15}), model,
                strategy)
    except ValueError as error:
        report["odd_batch_error"] = str(error)
    print("REPORT " + json.dumps(report))
""")


def _run_reporting(script: str, args: dict) -> dict:
    """Runs ``script`` (Python source taking ``args`` as JSON) in a process
    of its own (logical devices are set up once per process) and returns
    the JSON it printed after ``REPORT ``."""
    result = forked.run([sys.executable, "-c", script, json.dumps(args)],
                        capture_output=True, text=True, timeout=TIMEOUT, cwd=str(REPO),
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                             "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("REPORT ")[1])


def test_mirrored_replicas_train_like_one_device(runs):
    train_dir = runs["root"] / "mirrored"
    model = {"model": "MoeModel", "num_classes": NUM_CLASSES,
             "feature_names": ["mean_rgb", "mean_audio"], "feature_sizes": [1024, 128],
             "moe_l2": 0.5}
    args = {"data": runs["data"], "initial": str(runs["initial"]), "train_dir": str(train_dir),
            "bn_dir": str(runs["root"] / "mirrored_bn"), "model": model}
    report = _run_reporting(_MIRRORED_SCRIPT, args)
    assert report["global_step"] == STEPS
    _assert_same_state(train_dir, runs["single"])
    assert report["replicas_differ"] == []
    assert report["moving_mean_moved"]
    assert "--batch_size=15 is the global batch" in report["odd_batch_error"]
    assert "number of replicas (2)" in report["odd_batch_error"]


_SAMPLING_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from youtube8m_willow.config import ModelConfig
    from youtube8m_willow.training.trainer import TrainConfig, Trainer

    args = json.loads(sys.argv[1])
    model = ModelConfig(**args["model"])

    def sampled(train_dir, strategy, step):
        \"\"\"{replica: (sampling seed, positions of the frames sampled)} of one step.\"\"\"
        config = TrainConfig(train_dir=train_dir, train_data_pattern=args["data"], batch_size=4,
                             num_epochs=1, shuffle=False, num_readers=1, seed=5,
                             export_model_steps=0)
        trainer = Trainer(config, model, strategy)
        sampler, seen = trainer.model.sampler, {}
        original = sampler.indices

        def record(replica, seed, frames):
            seen[int(replica)] = (seed.numpy().tolist(), frames.numpy().tolist())
            return 0

        def indices(num_frames, sampling_seed=None):
            frames = original(num_frames, sampling_seed)
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            done = tf.py_function(record, [replica, sampling_seed, frames], tf.int32)
            with tf.control_dependencies([done]):
                return tf.identity(frames)

        sampler.indices = indices
        trainer.global_step = step
        trainer.step(next(iter(trainer.make_dataset())))
        return seen

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"two": sampled(args["root"] + "/two", mirrored, 7),
              "two_again": sampled(args["root"] + "/two_again", mirrored, 7),
              "one": sampled(args["root"] + "/one", None, 7)}
    print("REPORT " + json.dumps(report))
""")


def test_replicas_sample_different_frames_reproducibly(tmp_path):
    """Every video of the data is one video, so row i of each replica's batch
    is the same video: the replicas must still draw different frames for it,
    the same ones when the step is done again, and one replica keeps the
    single-process seed (seed, step + 1)."""
    import tensorflow as tf

    source = write_synthetic_dataset(str(tmp_path / "source"), num_videos=1, num_classes=4,
                                     num_shards=1, feature_sizes=(8, 4), max_frames=30,
                                     min_frames=20, video_level=False)["frame"]
    record = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(source)))).numpy()
    data = tmp_path / "same.tfrecord"
    with tf.io.TFRecordWriter(str(data)) as writer:
        for _ in range(8):
            writer.write(record)
    model = {"model": "DbofModel", "num_classes": 4, "feature_names": ["rgb", "audio"],
             "feature_sizes": [8, 4], "frame_features": True, "max_frames": 30,
             "iterations": 6, "frame_sampling": "random", "dbof_cluster_size": 4,
             "dbof_hidden_size": 4}
    args = {"data": str(data), "root": str(tmp_path), "model": model}
    report = _run_reporting(_SAMPLING_SCRIPT, args)
    two, again, one = report["two"], report["two_again"], report["one"]
    assert sorted(two) == ["0", "1"] and sorted(one) == ["0"]
    assert two["0"][0] != two["1"][0]
    for row in range(2):
        assert two["0"][1][row] != two["1"][1][row]
    assert two == again
    assert one["0"][0] == [5, 8]


# ----------------------------------------------------------- no processes

@pytest.mark.parametrize("config,chief,multi", [
    ({}, True, False),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, True, False),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False, True),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}},
     False, True),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}},
     True, True),
    ({"cluster": {"worker": ["a:1"], "evaluator": ["b:1"]},
      "task": {"type": "worker", "index": 0}}, True, False),
])
def test_tf_config_roles(config, chief, multi):
    assert distribute.is_chief(config) is chief
    assert distribute.is_multi_worker(config) is multi


def test_tf_config_errors():
    with pytest.raises(ValueError, match="not valid JSON"):
        distribute.tf_config({"TF_CONFIG": "{cluster"})
    parameter_servers = {"cluster": {"worker": ["a:1"], "ps": ["b:1"]},
                         "task": {"type": "worker", "index": 0}}
    with pytest.raises(ValueError, match=r"task types \['ps'\].*MultiWorkerMirroredStrategy"):
        distribute.is_multi_worker(parameter_servers)


def test_batch_split_and_file_shards():
    assert distribute.per_replica_batch_size(1024, 4) == 256
    with pytest.raises(ValueError, match="--batch_size=1000 .* replicas \\(3\\); e.g. "
                                         "--batch_size=999"):
        distribute.per_replica_batch_size(1000, 3)
    files = [f"f{i}" for i in range(5)]
    assert distribute.shard_files(files, 2, 0) == ["f0", "f2", "f4"]
    assert distribute.shard_files(files, 2, 1) == ["f1", "f3"]
    assert distribute.shard_files(files, 1, 0) == files
    assert distribute.shard_files(files, 6, 0) is None  # fewer files than workers


# ----------------------------------------------------------- the update

def test_clip_by_norm_matches_tensorflow():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for scale in (0.01, 10.0):  # below and above the clip norm
        gradient = tf.constant(rng.standard_normal((50, 30)).astype(np.float32) * scale)
        np.testing.assert_allclose(updates.clip_by_norm(gradient, 1.0),
                                   tf.clip_by_norm(gradient, 1.0), rtol=1e-6, atol=1e-7)
    zeros = tf.zeros([4])
    np.testing.assert_array_equal(updates.clip_by_norm(zeros, 1.0), zeros)


def test_a_large_gradient_is_multiplied_only_when_clipped():
    import tensorflow as tf

    clip = tf.function(lambda g: updates.clip_by_norm(g, 1.0, large=1500))
    graph = clip.get_concrete_function(tf.TensorSpec([50, 30])).graph
    assert {op.type for op in graph.get_operations()} & {"If", "StatelessIf"}
    rng = np.random.default_rng(1)
    for scale in (0.01, 10.0):
        gradient = tf.constant(rng.standard_normal((50, 30)).astype(np.float32) * scale)
        np.testing.assert_allclose(clip(gradient), tf.clip_by_norm(gradient, 1.0),
                                   rtol=1e-6, atol=1e-7)
    within = tf.constant(rng.standard_normal((50, 30)).astype(np.float32) * 0.01)
    np.testing.assert_array_equal(clip(within), within)


def test_fused_adam_matches_keras_adam():
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(1)
    start = rng.standard_normal((6, 4)).astype(np.float32)
    gradients = [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(3)]
    results = []
    for fused in (False, True):
        variable = keras.Variable(start)
        optimizer = keras.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        optimizer.build([variable])
        for gradient in gradients:
            if fused:
                updates.apply_adam(optimizer, [tf.constant(gradient)], [variable])
            else:
                optimizer.apply([tf.constant(gradient)], [variable])
        results.append((variable.numpy(), optimizer._momentums[0].numpy(),
                        optimizer._velocities[0].numpy(), int(optimizer.iterations.numpy())))
    for keras_value, fused_value in zip(*results):
        np.testing.assert_allclose(fused_value, keras_value, rtol=1e-5, atol=1e-7)
    assert not np.allclose(results[1][0], start)


def test_loss_scale_skips_overflow_and_grows():
    import tensorflow as tf

    scale = updates.DynamicLossScale(initial_scale=8.0, growth_interval=2)
    gradients, finite = scale.unscaled([tf.constant([16.0, np.inf])])
    assert not bool(finite)
    scale.update(finite)
    assert float(scale.scale) == 4.0
    gradients, finite = scale.unscaled([tf.constant([8.0, 4.0])])
    np.testing.assert_array_equal(gradients[0], [2.0, 1.0])
    for _ in range(2):
        scale.update(finite)
    assert float(scale.scale) == 8.0 and int(scale.good_steps) == 0
