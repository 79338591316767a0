"""Class names: the 2018 vocabulary.csv and 2017 label_names.csv formats, the
module's command line and inference.py's --vocabulary_file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import forked
from conftest import REPO, read_submission, run_script, shared_path
from youtube8m_willow.submission.vocabulary import (VocabularyError, describe_batch,
                                                    describe_predictions, load_vocabulary)


def test_real_2018_vocabulary():
    vocabulary = load_vocabulary(str(shared_path("data", "vocabulary-2018.csv")))
    assert len(vocabulary) == 3862 and sorted(vocabulary) == list(range(3862))
    assert vocabulary[0] == "Game" and vocabulary[1] == "Video game"
    assert vocabulary[120] == "/m/0dxrf"  # no Name: its KnowledgeGraphId


def test_real_2017_label_names():
    vocabulary = load_vocabulary(str(shared_path("data", "label_names-2017.csv")))
    assert len(vocabulary) == 4716
    assert vocabulary[0] == "Games" and vocabulary[4715] == "Pina Records"


def test_small_files_of_both_formats(tmp_path):
    new = tmp_path / "vocabulary.csv"
    new.write_text("Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl\n"
                   '7,10,/m/07,"Cars, trucks",https://x\n3,5,/m/03,NA,\n4,5,/m/04,,\n')
    assert load_vocabulary(str(new)) == {7: "Cars, trucks", 3: "NA", 4: "/m/04"}
    old = tmp_path / "label_names.csv"
    old.write_text("label_id,label_name\n0,Games\n12,None\n")
    assert load_vocabulary(str(old)) == {0: "Games", 12: "None"}


def test_bad_files_name_the_file(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("VideoId,LabelConfidencePairs\na,1 0.5\n")
    with pytest.raises(VocabularyError, match=r"other.csv: not a vocabulary file: expected "
                                              r".*label_id,label_name; found columns VideoId"):
        load_vocabulary(str(other))
    bad_index = tmp_path / "bad_index.csv"
    bad_index.write_text("label_id,label_name\n0,Games\nx,Cars\n")
    with pytest.raises(VocabularyError, match=r"bad_index.csv:3: label_id 'x' is not a class"):
        load_vocabulary(str(bad_index))
    with pytest.raises(FileNotFoundError, match="missing.csv: no such vocabulary file"):
        load_vocabulary(str(tmp_path / "missing.csv"))


def test_describe_predictions():
    vocabulary = {0: "Game", 1: "Video game"}
    text = describe_predictions(b"v1", [1, 0, 99], [0.5, 0.9125, 0.95], vocabulary, top_n=2)
    assert text == "v1: ? (99) 0.950, Game (0) 0.912"
    lines = describe_batch([b"a", b"b", b"c"], [[0], [1], [0]], [[0.1], [0.2], [0.3]],
                           vocabulary, max_videos=2)
    assert lines == ["a: Game (0) 0.100", "b: Video game (1) 0.200"]


def _run_module(*args: str) -> subprocess.CompletedProcess:
    return forked.run([sys.executable, "-m", "youtube8m_willow.submission.vocabulary", *args],
                      capture_output=True, text=True, cwd=str(REPO), timeout=300)


@pytest.mark.slow
def test_module_command_line(tmp_path):
    names = tmp_path / "names.csv"
    names.write_text("label_id,label_name\n1,Cars\n2,Dogs\n")
    submission = tmp_path / "sub.csv"
    submission.write_text("VideoId,LabelConfidencePairs\n007,2 0.9 1 0.4\nb,1 0.3\nc,2 0.1\n")
    result = _run_module(f"--vocabulary_file={names}", f"--submission={submission}",
                         "--num_videos=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["007: Dogs (2) 0.900, Cars (1) 0.400",
                                          "b: Cars (1) 0.300"]
    result = _run_module(f"--vocabulary_file={submission}", f"--submission={submission}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"ERROR: {submission}: not a vocabulary file")


@pytest.mark.slow
def test_inference_logs_named_predictions(tmp_path):
    fixture = shared_path("fixtures", "moe_video")
    meta = json.loads((fixture / "meta.json").read_text())
    names = tmp_path / "label_names.csv"
    names.write_text("label_id,label_name\n26,Cooking\n115,Ballet\n116,Pokemon\n")
    output = tmp_path / "out.csv"
    common = [f"--train_dir={fixture / 'train_dir'}",
              f"--input_data_pattern={fixture / 'data.tfrecord'}", f"--output_file={output}",
              "--num_classes=120", "--frame_sampling=uniform", *meta["model_flags"]]
    result = run_script("inference.py", *common, f"--vocabulary_file={names}",
                        "--print_top_videos=2")
    expected = read_submission(fixture / "expected.csv")
    assert read_submission(output).keys() == expected.keys()
    messages = [line.split("] ", 1)[-1] for line in result.stderr.splitlines()]
    logged = [message for message in messages if message.split(":")[0] in expected]
    named = {26: "Cooking", 115: "Ballet", 116: "Pokemon"}
    assert logged == [f"{video_id}: " + ", ".join(
        f"{named.get(label, '?')} ({label}) {score:.3f}" for label, score in expected[video_id][:5])
        for video_id in meta["video_ids"][:2]]

    failed = run_script("inference.py", *common, f"--vocabulary_file={tmp_path / 'no.csv'}",
                        check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1] == f"ERROR: {tmp_path / 'no.csv'}: no such " \
                                                     "vocabulary file"
