"""The README stays true: its Python example runs, its flags exist, and it
opens with the two set-up commands."""

from __future__ import annotations

import re

from conftest import REPO

README = (REPO / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_python_example_runs():
    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README example", "exec"), namespace)
    model = namespace["model"]
    assert model.output_shape == (None, 3862)


def test_flags_in_the_table_exist():
    from absl import flags

    from youtube8m_willow import flags as yt_flags

    yt_flags.define_eval_flags()
    yt_flags.define_inference_flags()
    documented = re.findall(r"^\| `--(\w+)`", README, re.M)
    assert len(documented) >= 10
    for name in documented:
        assert name in flags.FLAGS, name


def test_frame_level_example_is_the_recipes_first_line():
    block = README.split("Gated\nNetVLAD, exactly as WILLOW's README trains it")[1].split("```")[1]
    recipe = (REPO / "recipes" / "willow_ensemble.sh").read_text()
    assert block.strip() + " ${TRAIN_FLAGS}" in recipe
