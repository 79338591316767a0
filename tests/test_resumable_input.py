"""The planned (resumable) training input: a stream resumed from the position
after any batch continues exactly as the uninterrupted stream, and epochs
are counted across restarts."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

from youtube8m_willow.data import readers
from youtube8m_willow.data.readers import ReaderConfig
from youtube8m_willow.data.resumable import InputPosition, Plan
from youtube8m_willow.data.synthetic import write_synthetic_dataset
from youtube8m_willow.training import resume

SIZES = (8, 4)
NUM_CLASSES = 6
FRAME = ReaderConfig(("rgb", "audio"), SIZES, True, num_classes=NUM_CLASSES, max_frames=5)
VIDEO = ReaderConfig(("mean_rgb", "mean_audio"), SIZES, False, num_classes=NUM_CLASSES)
BATCH = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Frame- and video-level files of unequal lengths (7, 5, 9, 4 videos)."""
    patterns = {}
    for name, count in (("a", 7), ("b", 5), ("c", 9), ("d", 4)):
        out = tmp_path_factory.mktemp(name)
        written = write_synthetic_dataset(str(out), num_videos=count, num_classes=NUM_CLASSES,
                                          num_shards=1, feature_sizes=SIZES, min_frames=1,
                                          max_frames=7, seed=ord(name), prefix=name)
        for level, pattern in written.items():
            patterns.setdefault(level, []).append(pattern)
    return patterns


def _plan(files, shuffle=True, seed=11, num_readers=2, window=4) -> Plan:
    return Plan(tuple(readers.file_sizes(files)), shuffle, seed, num_readers, window)


def _batches(plan, config, num_epochs=1, position=InputPosition(), shard=None, limit=None):
    dataset = readers.make_planned_dataset(plan, config, BATCH, num_epochs=num_epochs,
                                           position=position, shard=shard)
    assert dataset.options().autotune.enabled is False  # see test_readers
    out = []
    for batch in dataset:
        out.append({k: v.numpy() for k, v in batch.items()})
        if limit is not None and len(out) == limit:
            break
    return out


def _ids(batches):
    return [i for b in batches for i in b["video_ids"]]


# (level, reader, shuffle, num_readers, files): one and several files, one
# and several readers, shuffled and in order.
CASES = [("frame", FRAME, True, 2, 4), ("frame", FRAME, False, 2, 4), ("video", VIDEO, True, 3, 4),
         ("video", VIDEO, False, 1, 1), ("video", VIDEO, True, 2, 1)]


@pytest.mark.parametrize("level,config,shuffle,num_readers,files", CASES)
def test_resumed_after_a_batch_continues_the_stream(data, level, config, shuffle, num_readers,
                                                      files):
    plan = _plan(data[level][:files], shuffle=shuffle, num_readers=num_readers)
    full = _batches(plan, config, num_epochs=2)
    total = sum(len(b["video_ids"]) for b in full)
    assert total == 2 * sum((7, 5, 9, 4)[:files])
    for cut in sorted({1, len(full) // 2, len(full) - 1}):  # early, mid (epoch 2), last
        position = InputPosition.from_row(full[cut - 1]["input_position"][-1])
        resumed = _batches(plan, config, num_epochs=2, position=position)
        assert len(resumed) == len(full) - cut, (cut, position)
        for ours, reference in zip(resumed, full[cut:]):
            for key, value in reference.items():
                np.testing.assert_array_equal(ours[key], value, err_msg=f"{key} after {cut}")


def test_every_video_once_per_epoch_and_epochs_differ(data):
    plan = _plan(data["video"])
    ids = _ids(_batches(plan, VIDEO, num_epochs=2))
    first, second = ids[:25], ids[25:]
    assert set(collections.Counter(ids).values()) == {2}
    assert sorted(first) == sorted(second) and len(set(first)) == 25
    assert first != second  # reshuffled each epoch
    in_order = _ids(_batches(_plan(data["video"], shuffle=False), VIDEO))
    assert first != in_order and sorted(first) == sorted(in_order)
    assert ids == _ids(_batches(plan, VIDEO, num_epochs=2))  # a function of the seed
    assert ids != _ids(_batches(dataclasses.replace(plan, seed=12), VIDEO, num_epochs=2))


def test_epochs_are_counted_from_the_position(data):
    plan = _plan(data["video"][:2])
    full = _batches(plan, VIDEO, num_epochs=3)
    assert len(_ids(full)) == 36
    position = InputPosition.from_row(full[5]["input_position"][-1])
    assert position.epoch == 1  # 18 videos in epoch 0, batch 5 ends inside epoch 1
    rest = _ids(_batches(plan, VIDEO, num_epochs=3, position=position))
    assert rest == _ids(full)[18:]
    done = InputPosition(epoch=3)
    assert _batches(plan, VIDEO, num_epochs=3, position=done) == []


def test_shards_partition_every_epoch(data):
    plan = _plan(data["video"], num_readers=2)
    full = _ids(_batches(plan, VIDEO, num_epochs=2))
    shards = [_ids(_batches(plan, VIDEO, num_epochs=2, shard=(2, i, BATCH))) for i in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(full)
    assert shards[0][:BATCH] == full[:BATCH] and shards[1][:BATCH] == full[BATCH:2 * BATCH]


def test_positions_are_small_and_valid():
    assert InputPosition.from_row([1, 2, 3, 4, 5]).as_list() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="negative"):
        InputPosition(epoch=-1)


# --------------------------------------------------------------------------- the saved state


def _state(plan, positions):
    return resume.InputState(plan.seed, tuple(resume.describe(plan) for _ in positions),
                             tuple(positions))


def test_input_state_round_trip_and_size(data):
    plan = _plan(data["video"])
    state = _state(plan, [InputPosition(2, 3, 1, 9, 4), InputPosition(2, 3, 1, 9, 5)])
    text = state.to_json()
    assert resume.InputState.from_json(text, "x") == state
    assert len(text) < 700  # two workers, whatever the data
    for broken in ("", "[]", '{"format": 2}', '{"format": 1, "seed": 1, "plans": [],'
                   ' "positions": [[1, 2, 3, 4, -5]]}'):
        with pytest.raises(resume.InputStateError, match="^ckpt.input.json: not a readable "
                           "input state .*; delete it to resume with the input from the start"):
            resume.InputState.from_json(broken, "ckpt.input.json")


def test_where_a_resumed_worker_starts(data):
    plan = _plan(data["video"])
    saved = InputPosition(1, 2, 0, 3, 1)
    state = _state(plan, [saved])
    assert resume.position_for(state, 0, 1, plan, "ckpt") == (saved, None)
    position, warning = resume.position_for(None, 0, 1, plan, "ckpt")
    assert position == InputPosition() and "ckpt has no saved input position" in warning
    position, warning = resume.position_for(state, 0, 2, plan, "ckpt")
    assert position == InputPosition(epoch=1) and "1 worker(s), this run has 2" in warning
    for changed, name in ((dataclasses.replace(plan, files=plan.files[1:]), "files, fingerprint"),
                          (dataclasses.replace(plan, window=8), "window"),
                          (dataclasses.replace(plan, seed=3), "seed")):
        position, warning = resume.position_for(state, 0, 1, changed, "ckpt")
        assert position == InputPosition(epoch=1)
        assert f"({name} changed): the input starts over at epoch 1" in warning
