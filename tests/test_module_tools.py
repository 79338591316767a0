"""The package's ``python -m`` tools look finished: quiet start-up (no
TensorFlow notices, no runpy warning), ``-h`` with the defaults, and the
whole job in one call. Each runs in a process of its own: its start-up
output is what is tested. (The demo's runs: tests/test_demo.py.)"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, chatter, run_script, user_env

# Each tool and what its -h must show: its defaults.
HELP_SHOWS = {
    "youtube8m_willow.data.synthetic": ["(default: 1000)", "(default: 250)", "(default: 100)",
                                        "(default: realistic)", "--prefix"],
    "youtube8m_willow.portable.convert": ["--train_dir", "(default: '/tmp/yt8m_model/')",
                                          "--check_point", "(default: '-1')", "--output_file"],
    "youtube8m_willow.submission.vocabulary": ["--num_videos", "(default: 5)"],
    "youtube8m_willow.demo": ["(default: demo_output; with --segments: demo_segments_output)",
                              "(default: 300; with --segments: 1000)"],
}


def run_tool(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` in a user's environment (no TF_CPP_MIN_LOG_LEVEL)."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=600, env=user_env(), cwd=str(REPO))


def assert_quiet(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert chatter(output) == [], output[-3000:]
    assert "RuntimeWarning" not in output, output[-3000:]


@pytest.mark.parametrize("module", sorted(HELP_SHOWS))
def test_help_shows_the_defaults_quietly(module):
    result = run_tool(module, "-h")
    # absl's --help exits 1 (as train.py's does); argparse's -h exits 0.
    assert result.returncode == (1 if module.endswith("convert") else 0), result.stderr[-3000:]
    assert_quiet(result)
    assert result.stderr == ""
    text = " ".join(result.stdout.split())  # as wrapped to any terminal's width
    for shown in HELP_SHOWS[module]:
        assert shown in text, (shown, result.stdout)


def _labels_of_first_record(pattern: str) -> list[int]:
    record = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)[0]).take(1))).numpy()
    example = tf.train.SequenceExample.FromString(record)
    return list(example.context.feature["labels"].int64_list.value)


def test_synthetic_writes_every_split_quietly(tmp_path):
    result = run_tool("youtube8m_willow.data.synthetic", f"--out_dir={tmp_path}",
                      "--num_videos=12", "--num_eval_videos=5", "--num_classes=4",
                      "--num_shards=1", "--max_frames=3", "--min_frames=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result)
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"{split} {kind}: {tmp_path / kind / split}*.tfrecord"
        for split in ("train", "validate", "test") for kind in ("frame", "video")]
    for kind in ("frame", "video"):
        counts = {split: sum(1 for _ in tf.data.TFRecordDataset(
            str(tmp_path / kind / f"{split}0000.tfrecord"))) for split in ("train", "validate", "test")}
        assert counts == {"train": 12, "validate": 5, "test": 5}
    # The test split has no labels, as the real one; the others have.
    assert _labels_of_first_record(str(tmp_path / "frame" / "test*")) == []
    assert _labels_of_first_record(str(tmp_path / "frame" / "validate*")) != []


def test_synthetic_prefix_writes_one_split(tmp_path):
    result = run_tool("youtube8m_willow.data.synthetic", f"--out_dir={tmp_path}",
                      "--num_videos=3", "--prefix=extra", "--no_labels", "--skip_video_level",
                      "--max_frames=2", "--min_frames=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [f"extra frame: {tmp_path / 'frame' / 'extra'}*.tfrecord"]
    assert sorted(p.name for p in tmp_path.rglob("*.tfrecord")) == ["extra0000.tfrecord",
                                                                    "extra0001.tfrecord"]
    assert _labels_of_first_record(str(tmp_path / "frame" / "extra*")) == []
    refused = run_tool("youtube8m_willow.data.synthetic", f"--out_dir={tmp_path}",
                       "--no_labels")
    assert refused.returncode == 2 and "--no_labels needs --prefix" in refused.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-step LogisticModel train_dir and a submission of it."""
    from youtube8m_willow.data.synthetic import write_synthetic_splits

    root = tmp_path_factory.mktemp("tools")
    splits = write_synthetic_splits(str(root / "data"), num_videos=16, num_eval_videos=4,
                                    num_classes=4, num_shards=1, feature_sizes=(8, 4),
                                    max_frames=2, min_frames=1, frame_level=False)
    model = ["--model=LogisticModel", "--feature_names=mean_rgb,mean_audio",
             "--feature_sizes=8,4", "--num_classes=4"]
    run_script("train.py", f"--train_dir={root / 'run'}", "--batch_size=8", "--max_steps=1",
               f"--train_data_pattern={splits['train']['video']}", *model)
    run_script("inference.py", f"--train_dir={root / 'run'}",
               f"--input_data_pattern={splits['test']['video']}",
               f"--output_file={root / 'submission.csv'}")
    return root


def test_convert_runs_quietly(trained):
    output = trained / "run.npz"
    result = run_tool("youtube8m_willow.portable.convert", f"--train_dir={trained / 'run'}",
                      f"--output_file={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result)
    assert result.stdout == f"wrote {output} from {trained / 'run' / 'model.ckpt-1'}\n"
    with np.load(output) as stored:
        assert stored["fully_connected/weights"].shape == (12, 4)


def test_vocabulary_runs_quietly(trained):
    vocabulary = trained / "vocabulary.csv"
    vocabulary.write_text("Index,TrainVideoCount,KnowledgeGraphId,Name\n0,1,/m/a,Game\n"
                          "1,1,/m/b,Car\n2,1,/m/c,\n3,1,/m/d,Dog\n")
    result = run_tool("youtube8m_willow.submission.vocabulary",
                      f"--vocabulary_file={vocabulary}",
                      f"--submission={trained / 'submission.csv'}", "--num_videos=2",
                      "--top_n=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("test000000: ")
    assert {"Game (0)", "Car (1)", "/m/c (2)", "Dog (3)"} <= {
        pair.rsplit(" ", 1)[0] for pair in lines[0].split(": ", 1)[1].split(", ")}
