"""One version: spacy_twner/about.py, read by setup.cfg and stamped into every
package; project.yml carries none of its own; CHANGELOG has a dated section for it."""
import configparser
import inspect
import re
from importlib.metadata import version

import srsly
from typer.testing import CliRunner

from spacy_twner.about import __version__
from spacy_twner.cli import app

from .conftest import ROOT


def test_setup_cfg_reads_the_version_from_about_and_the_installed_metadata_agrees():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    assert parser["metadata"]["version"] == "attr: spacy_twner.about.__version__"
    assert version("spacy-twner") == __version__


def test_twner_version_and_the_package_default_are_about_s():
    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"spacy_twner {__version__}"
    package = next(c for c in app.registered_commands if c.callback.__name__ == "package")
    assert inspect.signature(package.callback).parameters["version"].default.default == __version__


def test_project_yml_has_no_version_of_its_own():
    project = srsly.read_yaml(ROOT / "project.yml")
    assert "version" not in project["vars"]
    assert "${vars.version}" not in (ROOT / "project.yml").read_text(encoding="utf-8")


def test_changelog_opens_with_a_dated_section_for_this_version_and_dates_every_release():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert sections[0].startswith(f"{__version__} (")
    assert all(re.fullmatch(r"\d+\.\d+\.\d+ \(\d{4}-\d{2}-\d{2}\)", s) for s in sections), sections
    assert [s.split()[0] for s in sections[-3:]] == ["0.3.0", "0.2.0", "0.1.0"]  # newest first
    assert {"0.1.0", "0.2.0", "0.3.0", __version__} <= {s.split()[0] for s in sections}
