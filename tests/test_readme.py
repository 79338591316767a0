"""The README stays true: its Python example runs, its flags exist, its
layout names every module, and it opens with the two set-up commands."""

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
    from youtube8m_willow import flags as yt_flags

    defined = set().union(*map(yt_flags.script_defaults, yt_flags.SCRIPT_DEFINERS))
    documented = re.findall(r"^\| `--(\w+)`", README, re.M)
    assert len(documented) >= 10
    for name in documented:
        assert name in defined, name


def test_frame_level_example_is_the_recipes_first_line():
    block = README.split("Gated\nNetVLAD, exactly as WILLOW's README trains it")[1].split("```")[1]
    recipe = (REPO / "recipes" / "willow_ensemble.sh").read_text()
    assert block.strip() + " ${TRAIN_FLAGS}" in recipe


def test_make_test_fast_selects_the_unit_tier_only(tmp_path):
    """`make test-fast` (collect-only here, in one process: make test runs
    these tests anyway) selects the unit tier: the doctests and the unit
    modules, no test marked slow."""
    import os
    import subprocess

    result = subprocess.run(["make", "--no-print-directory", "test-fast", "WORKERS=0"], cwd=REPO,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTEST_ADDOPTS": "--collect-only"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    selected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(selected) > 300
    assert any(line.startswith("youtube8m_willow/") for line in selected)  # doctests
    for slow in ("tests/test_demo.py", "tests/test_preemption.py", "tests/test_fixtures.py",
                 "tests/test_ensemble.py::test_command_line"):
        assert not any(line.startswith(slow) for line in selected), slow


def test_the_layout_names_every_module():
    """The README's layout names each of the package's modules (by file name,
    in its folder's entry) and no module that is not there."""
    block = re.search(r"^## Layout\n+```\n(.*?)```", README, re.S | re.M).group(1)
    named = set(re.findall(r"\b(\w+\.py)\b", block))
    package = REPO / "youtube8m_willow"
    modules = {path.name for path in package.rglob("*.py") if path.name != "__init__.py"}
    assert modules - named == set(), "modules the layout leaves out"
    outside = {name for name in named - modules
               if not list(REPO.glob(name)) and not list(REPO.glob(f"*/{name}"))}
    assert outside == set(), "files the layout names that do not exist"
