"""Help that explains: every flag has a line of its own in this project's
words and a group; each script's --help lists that script's flags; --helpfull
lists them by group, in order; the README's flag tables are the same lines."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest
from absl import flags

from conftest import REPO
from youtube8m_willow import flag_help
from youtube8m_willow import flags as yt_flags
from youtube8m_willow.config import ModelConfig

SCRIPTS = tuple(yt_flags.SCRIPT_DEFINERS)
HELP_COMMANDS = {script: [script] for script in SCRIPTS if script.endswith(".py")}
HELP_COMMANDS[flag_help.CONVERT] = ["-m", "youtube8m_willow.portable.convert"]
TABLES = re.compile(r"<!-- flag tables: begin -->\n(.*)<!-- flag tables: end -->", re.S)


def _defined(script: str) -> flags.FlagValues:
    """``script``'s flags, defined apart from this process's own."""
    flag_values = flags.FlagValues()
    yt_flags.SCRIPT_DEFINERS[script](flag_values)
    return flag_values


def _listed_by_module(help_text: str) -> dict[str, str]:
    """flag -> the module header absl's help lists it under."""
    listed, module = {}, None
    for line in help_text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            module = line[:-1]
        match = re.match(r"  (?:-\S,)?--(?:\[no\])?(\w+):", line)
        if match:
            listed[match.group(1)] = module
    return listed


def test_every_defined_flag_has_its_own_help_line_and_group():
    group_keys = {group.key for group in flag_help.GROUPS}
    defined_anywhere = set()
    for script in SCRIPTS:
        flag_values = _defined(script)
        defined_anywhere.update(flag_values)
        for name in flag_values:
            entry = flag_help.HELP.get(name)
            assert entry is not None, f"{script} --{name} has no flag_help entry"
            assert entry.group in group_keys, name
            help_text = flag_values[name].help
            assert "see the original" not in help_text, name
            if name != "max_step":  # absl's alias says "Alias for --max_steps."
                assert help_text.endswith(flag_help.help_line(name)), name  # enum: choices first
        for name in flag_help.script_flags(script):
            assert name in flag_values, f"{script}'s --help would list --{name}, undefined there"
    assert set(flag_help.HELP) == defined_anywhere, "entries of no script's flag"


def test_model_flags_say_which_models_read_them():
    from youtube8m_willow.models.registry import model_names

    assert sorted(flag_help.MODEL_NAMES) == model_names()
    phrases = {*flag_help.EVERY_MODEL, *flag_help.FRAME_LEVEL, *flag_help.NO_MODEL,
               flag_help.MOE_HEAD[1], flag_help.LOGISTIC_HEAD[1], *flag_help.RANDOM_SEQUENCE}
    for field in dataclasses.fields(ModelConfig):
        readers = flag_help.HELP[field.name].models
        assert readers, f"--{field.name} does not say which models read it"
        for reader in readers:
            assert reader in model_names() or reader in phrases, (field.name, reader)
    line = flag_help.help_line("moe_num_mixtures")
    assert line.endswith("Read by: MoeModel, the MoeModel head of frame-level models.")


def test_a_flag_read_by_no_model_is_read_by_none():
    """What the help calls unused no model or layer reads: no ``config.<name>``
    and no ``"<name>"`` in their source."""
    sources = "".join(path.read_text() for folder in ("models", "layers")
                      for path in (REPO / "youtube8m_willow" / folder).glob("*.py"))
    unused = [name for name, entry in flag_help.HELP.items()
              if entry.models == flag_help.NO_MODEL]
    assert len(unused) == 10
    for name in unused:
        assert not re.search(rf"\bconfig\.{name}\b|[\"']{name}[\"']", sources), name
        assert "read by no model" in flag_help.help_line(name)


def test_help_names_what_the_code_accepts():
    """The choices a help line lists are those the code knows."""
    from youtube8m_willow.data.release import CLASSES_BY_ID_KEY
    from youtube8m_willow.layers.sampling import SAMPLING_METHODS
    from youtube8m_willow.losses import loss_names
    from youtube8m_willow.training.optimizers import optimizer_names

    for names, flag in ((optimizer_names(), "optimizer"), (loss_names(), "label_loss"),
                        (SAMPLING_METHODS, "frame_sampling")):
        for name in names:
            assert name in flag_help.help_line(flag), (flag, name)
    num_classes = flag_help.help_line("num_classes")
    for key, classes in CLASSES_BY_ID_KEY.items():
        assert f"{key}: {classes}" in num_classes  # what a new run reads off its records


@pytest.mark.parametrize("script", SCRIPTS)
def test_helpfull_lists_each_flag_under_its_group_in_order(script):
    flag_values = _defined(script)
    listed = _listed_by_module(flag_values.get_help())
    for name in flag_values:
        assert listed[name] == flag_help.group_module(name), name
    headers = [module for module in dict.fromkeys(listed.values())
               if module in flag_help.GROUP_MODULES.values()]
    assert headers == [module for module in flag_help.GROUP_MODULES.values()
                       if module in headers]
    if script == flag_help.TRAIN:
        assert [header.split(", ")[1].split(":")[0] for header in headers] == [
            "data", "model", "training", "segments", "this project's additions (flags the "
                                                    "original code did not have)"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_of_each_script_lists_its_flags(script):
    result = subprocess.run([sys.executable, *HELP_COMMANDS[script], "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]  # absl exits 1 after --help
    listed = _listed_by_module(result.stdout.split("\nflags:\n", 1)[1])
    assert sorted(listed) == sorted(flag_help.script_flags(script))
    assert "Try --helpfull" in result.stdout
    assert "see the original" not in result.stdout
    if script == flag_help.TRAIN:
        assert "--train_data_pattern='/data/train*.tfrecord' \\\n" in result.stdout
        assert re.search(r"--num_classes: Classes the model predicts.*?\(default: '4716'\)",
                         result.stdout, re.S)


def test_readme_flag_tables_are_the_help_lines():
    tables = TABLES.search((REPO / "README.md").read_text())
    assert tables, "README lacks the flag tables' markers"
    assert tables.group(1) == yt_flags.flags_markdown(), (
        "README's flag tables differ from youtube8m_willow/flag_help.py; paste "
        "youtube8m_willow.flags.flags_markdown() between the markers")
    assert "| `--num_classes` | `4716` |" in tables.group(1)
    assert "| `--batch_size` | `1024` (train.py, eval.py), `8192` (inference.py) |" in (
        tables.group(1))
