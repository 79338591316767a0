"""Tests of the atomic writes shared by checkpoints, configs, weights files,
model tarballs and submission CSVs."""

import subprocess
import sys

import pytest

from youtube8m_willow.atomic import AtomicFile, write_atomic


def test_text_and_bytes_land_under_the_name_in_a_new_directory(tmp_path):
    write_atomic(str(tmp_path / "a" / "b.txt"), "é\n")
    write_atomic(str(tmp_path / "a" / "c.bin"), b"\x00\x01")
    assert (tmp_path / "a" / "b.txt").read_bytes() == "é\n".encode()
    assert (tmp_path / "a" / "c.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.txt", "c.bin"]


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with AtomicFile(str(path)) as target:
            target.write("partial")
            assert path.read_text() == "old"  # not yet replaced
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_the_handle_is_seekable_for_local_files(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "w.npz"
    with AtomicFile(str(path), "wb") as target:
        np.savez(target.handle, a=np.arange(3))
    with np.load(path) as stored:
        assert stored["a"].tolist() == [0, 1, 2]


def test_a_local_write_does_not_load_tensorflow(tmp_path):
    code = ("import sys; from youtube8m_willow.atomic import write_atomic; "
            f"write_atomic({str(tmp_path / 'x')!r}, 'x'); "
            "assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
