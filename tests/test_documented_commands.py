"""The product as a user has it: spacy_twner and the packaged pipelines installed
side by side in one fresh venv, and every command the docs show run there.

`user_venv` installs torch, then spacy_twner from this checkout (`pip install
".[distributed]"`, not editable), then the en_twner, en_twner_fp32 and
xx_twner wheels that the `project` and `xx_project` fixtures built with the
real workflows (a WNUT17 slice).

Every fenced block of README.md and docs/*.md in a language a user runs
(bash, sh, console, python) is a test, run in that venv by package name
from a scratch folder holding the inputs the blocks name (tweets.txt, ...).
A block that cannot run here says so on the line above its fence,

    <!-- doc-test: skip: the reason -->

and is reported as skipped with that reason. A bash block runs command by
command; `twner serve ...` is started, sent one request, stopped with SIGTERM.
The blocks of docs/own-data.md marked `<!-- doc-test: own-data -->` run in a
copy of the project instead, in order, as that guide's own test.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, NamedTuple

import pytest

from .conftest import ROOT, wnut_file

# every test here runs on what the project's workflows built
pytestmark = pytest.mark.slow

RUNNABLE = {"bash", "sh", "shell", "console", "python"}
SKIP = re.compile(r"<!--\s*doc-test:\s*skip:\s*(?P<reason>.+?)\s*-->")
OWN_DATA = re.compile(r"<!--\s*doc-test:\s*own-data\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
TWEETS = [
    "Heading to New York with Justin Bieber tomorrow #excited",
    "Apple announced the new iPhone at the event in California",
    "lol my mom just texted me from London",
    "watching the Lakers game at Staples Center with @mike",
]


class Block(NamedTuple):
    path: Path
    line: int
    lang: str
    code: str
    skip: str  # the reason, or ""
    own_data: bool = False  # run by the own-data guide's test, in a project copy

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def documented_blocks() -> List[Block]:
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if not fence:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            skip = SKIP.search(lines[i - 1]) if i else None
            if fence["lang"] in RUNNABLE:
                code = "\n".join(lines[i + 1 : end]) + "\n"
                own = bool(i and OWN_DATA.search(lines[i - 1]))
                blocks.append(Block(path, i + 1, fence["lang"], code, skip["reason"] if skip else "", own))
            i = end + 1
    return blocks


ALL_BLOCKS = documented_blocks()
BLOCKS = [b for b in ALL_BLOCKS if not b.own_data]
GUIDE = [b for b in ALL_BLOCKS if b.own_data]


def commands(code: str) -> List[str]:
    """A shell block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_docs_have_runnable_blocks_and_every_skip_gives_a_reason():
    assert sum(not b.skip for b in BLOCKS) >= 4, [b.id for b in BLOCKS]
    assert all(len(b.skip) > 10 for b in BLOCKS if b.skip)
    shown = "\n".join(b.code for b in BLOCKS if not b.skip)
    for promise in ("twner annotate en_twner", "twner serve en_twner", "twner evaluate en_twner", 'spacy.load("en_twner")'):
        assert promise in shown, f"no runnable documented block shows {promise!r}"


# --- the user's environment ---------------------------------------------------


def wheel(project: Path, package: str) -> Path:
    (found,) = (project / "packages").glob(f"{package}-*/dist/{package}-*.whl")
    return found


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory, project, xx_project) -> Path:
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first and pinned: the CPU build on this disk (unpinned, pip takes a CUDA build)
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + [f"{ROOT}[distributed]"], check=True)
    subprocess.run(pip + [str(wheel(project, name)) for name in ("en_twner", "en_twner_fp32", "xx_twner")], check=True)
    return venv


def user_env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


@pytest.fixture(scope="session")
def workdir(tmp_path_factory, assets_dir, project) -> Path:
    """A user's folder with the inputs the documented commands name, and the
    packages/ folder `make all` writes (the slice build's wheels)."""
    work = tmp_path_factory.mktemp("user-work")
    (work / "packages").symlink_to(project / "packages")
    (work / "tweets.txt").write_text("\n".join(TWEETS) + "\n", encoding="utf-8")
    (work / "one.txt").write_text(TWEETS[0] + "\n", encoding="utf-8")
    (work / "tweets.jsonl").write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(TWEETS)), encoding="utf-8")
    (work / "data").mkdir()
    for name, part in (("a", TWEETS[:2]), ("b", TWEETS[2:])):
        (work / "data" / f"{name}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    # 30 labelled tweets in WNUT CoNLL: the first of WNUT16 dev
    tweets = wnut_file(assets_dir, "wnut16", "dev").read_text(encoding="utf-8").split("\n\n")[:30]
    (work / "my-tweets.conll").write_text("\n\n".join(tweets) + "\n\n", encoding="utf-8")
    return work


def run_command(command: str, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def http(url: str, body=None) -> dict:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


def serve_once(command: str, cwd: Path, env: dict) -> None:
    """Start the documented server, wait for /healthz, send one request, SIGTERM."""
    args = shlex.split(command)
    port = int(args[args.index("--port") + 1]) if "--port" in args else 8000
    url = f"http://127.0.0.1:{port}"
    log = cwd / f"serve-{port}.log"
    with log.open("w") as out:
        server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, f"{command}: exited\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command}: not up in 300 s"
            try:
                health = http(f"{url}/healthz")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(1)
        reply = http(f"{url}/v1/ents", {"texts": [TWEETS[0]]})
        assert health["model"] == "en_twner" and len(reply["results"]) == 1 and "entities" in reply["results"][0]
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=120)
    assert code in (0, -signal.SIGTERM), f"{command}: exit status {code}\n{log.read_text()[-3000:]}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_documented_block_runs_as_a_user_runs_it(block, user_venv, workdir):
    if block.skip:
        pytest.skip(block.skip)
    env = user_env(user_venv)
    if block.lang == "python":
        out = subprocess.run([str(user_venv / "bin" / "python"), "-c", block.code], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        assert out.returncode == 0, out.stderr[-4000:]
        return
    for command in commands(block.code):
        if command.startswith("twner serve"):
            serve_once(command, workdir, env)
            continue
        out = run_command(command, workdir, env)
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"


# --- the promises of the user-path issue, by package name, with assertions ---

BOTH_IN_ONE_PROCESS = """
import json, sys, warnings
# one build's copies of the pipeline code are the same component: no warning either
warnings.filterwarnings("error", message=".*different versions of one component.*")
import spacy
import spacy_twner.cli  # the plugin imported too, as `twner` does

names = sys.argv[1].split(",")
nlps = [spacy.load(name) for name in names]
texts = json.loads(sys.argv[2])
out = {}
for name, nlp in zip(names, nlps):
    docs = list(nlp.pipe(texts))
    out[name] = {"pipe_names": nlp.pipe_names, "version": nlp.meta["version"],
                 "runtime": nlp.get_pipe("transformer").model.attrs["runtime"].quantize,
                 "ents": [[[e.start_char, e.end_char, e.label_] for e in d.ents] for d in docs],
                 "similarity": docs[0].similarity(docs[1])}
print(json.dumps(out))
"""


@pytest.mark.parametrize("order", ["en_twner,en_twner_fp32", "en_twner_fp32,en_twner", "xx_twner,en_twner", "en_twner_fp32,xx_twner"])
def test_packages_load_in_one_process_next_to_spacy_twner(user_venv, workdir, run_dir, xx_run_dir, order):
    import spacy

    out = subprocess.run([str(user_venv / "bin" / "python"), "-c", BOTH_IN_ONE_PROCESS, order, json.dumps(TWEETS)],
                         cwd=workdir, env=user_env(user_venv), capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    runtimes = {"en_twner": True, "en_twner_fp32": False, "xx_twner": True}
    assert {name: result["runtime"] for name, result in loaded.items()} == {name: runtimes[name] for name in loaded}
    for result in loaded.values():
        assert result["pipe_names"] == ["transformer", "ner", "sentence_embedder"]
        assert -1.0 <= result["similarity"] <= 1.0
    directories = {"en_twner": run_dir / "model-int8", "en_twner_fp32": run_dir / "model-final", "xx_twner": xx_run_dir / "model-int8"}
    for name in set(loaded) & set(directories):
        expected = [[[e.start_char, e.end_char, e.label_] for e in doc.ents] for doc in spacy.load(directories[name]).pipe(TWEETS)]
        assert loaded[name]["ents"] == expected, name


def test_annotate_and_evaluate_by_package_name_give_the_packages_entities(user_venv, workdir, run_dir, tmp_path):
    import spacy

    env = user_env(user_venv)
    out = run_command(f"twner annotate en_twner tweets.txt {tmp_path / 'out.jsonl'}", workdir, env)
    assert out.returncode == 0, out.stderr[-4000:]
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = [[[e.start_char, e.end_char, e.label_] for e in doc.ents] for doc in spacy.load(run_dir / "model-int8").pipe(TWEETS)]
    assert [[[e["start"], e["end"], e["label"]] for e in r["entities"]] for r in records] == expected

    convert = run_command(f"twner convert my-tweets.conll {tmp_path / 'my.spacy'}", workdir, env)
    assert convert.returncode == 0, convert.stderr[-2000:]
    scored = run_command(f"twner evaluate en_twner_fp32 {tmp_path / 'my.spacy'} --output {tmp_path / 'scores.json'} --speed-passes 0", workdir, env)
    assert scored.returncode == 0, scored.stderr[-4000:]
    metrics = json.loads((tmp_path / "scores.json").read_text())
    assert metrics["model"] == "en_twner_fp32" and 0.0 <= metrics["ents_f"] <= 1.0


# --- docs/own-data.md: the guide's commands on the shipped example ---------------

FRESH_LOAD = """
import json, socket, sys
def no_network(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.getaddrinfo"):
        raise OSError(f"network access attempted: {event}")
sys.addaudithook(no_network)
import importlib.util
assert importlib.util.find_spec("spacy_twner") is None, "spacy_twner is installed"
import spacy
nlp = spacy.load("en_example")
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
docs = list(nlp.pipe(texts))
print(json.dumps({"labels": sorted({e.label_ for d in docs for e in d.ents}), "entities": sum(len(d.ents) for d in docs),
                  "ner_labels": list(nlp.get_pipe("ner").labels), "version": nlp.meta["version"]}))
"""


def test_the_own_data_guide_runs_on_the_example_and_its_wheel_loads_offline_in_a_fresh_venv(user_venv, workdir, tmp_path):
    """Every command of docs/own-data.md, in a copy of the project, in the
    user's environment (spacy_twner and en_twner_fp32 installed); then the
    example's wheel alone in a fresh venv without spacy_twner, offline:
    doc.ents carries the example's labels, none of WNUT's."""
    import shutil

    assert [b.lang for b in GUIDE] == ["bash", "python", "bash"], [b.id for b in GUIDE]
    project = tmp_path / "project"
    project.mkdir()
    for name in ("project.yml", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copytree(ROOT / "assets" / "own-example", project / "assets" / "own-example")
    env = user_env(user_venv)
    for block in GUIDE:
        if block.lang == "python":
            out = subprocess.run([str(user_venv / "bin" / "python"), "-c", block.code], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-4000:]
            assert "['brand', 'drug', 'game']" in out.stdout or "('brand', 'drug', 'game')" in out.stdout, out.stdout
            continue
        for command in commands(block.code):
            out = run_command(command, project, env, timeout=1800)
            assert out.returncode == 0, f"{command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    card = (project / "packages" / "en_example-0.1.0" / "README.md").read_text(encoding="utf-8")
    assert "| **Name** | `en_example` |" in card and "`brand`, `drug`, `game`" in card and "train.jsonl" in card
    b_record = json.loads((project / "metrics" / "example_b.json").read_text())
    assert b_record["base"] == "en_twner_fp32" and b_record["scored_on"] == "test"

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True)
    pip = [str(fresh / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + [str(project / "packages" / "en_example-0.1.0" / "dist" / "en_example-0.1.0-py3-none-any.whl")], check=True)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([str(fresh / "bin" / "python"), "-c", FRESH_LOAD, str(ROOT / "assets" / "own-example" / "test.jsonl")],
                         capture_output=True, text=True, env=clean, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["ner_labels"] == ["brand", "drug", "game"] and loaded["version"] == "0.1.0"
    assert loaded["entities"] > 0 and set(loaded["labels"]) <= {"brand", "drug", "game"} and loaded["labels"]
