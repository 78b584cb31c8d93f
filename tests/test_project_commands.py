"""Every `python -m spacy_twner ...` line of project.yml names a command and
options that the CLI has: a renamed or retired option fails here in seconds,
not 40 minutes into `make all` (or the slow tier's run of it)."""
import shlex
from pathlib import Path

import click
import pytest
import srsly
import typer.main

from spacy_twner.cli import app

ROOT = Path(__file__).resolve().parent.parent
PROJECT = srsly.read_yaml(ROOT / "project.yml")
LINES = [(c["name"], line) for c in PROJECT["commands"] for line in c.get("script", []) if "-m spacy_twner " in line]


def options_of(command: click.Command) -> set:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def test_the_project_runs_spacy_twner_commands():
    assert len(LINES) > 20


@pytest.mark.parametrize("step,line", LINES, ids=[f"{s}:{i}" for i, (s, _) in enumerate(LINES)])
def test_every_project_command_and_option_exists(step, line):
    group = typer.main.get_command(app)
    words = shlex.split(line.split("-m spacy_twner ", 1)[1].split(" #")[0])
    command = group.get_command(click.Context(group), words[0])
    assert command is not None, f"{step}: no twner command {words[0]!r}"
    known = options_of(command)
    used = {w.split("=", 1)[0] for w in words[1:] if w.startswith("-") and not w.lstrip("-").replace(".", "").isdigit()}
    if command.context_settings.get("allow_extra_args"):  # config overrides (--paths.head ...), as spacy's own commands take
        used = {u for u in used if "." not in u}
    assert used <= known, f"{step}: twner {words[0]} has no {sorted(used - known)}"
