"""Run the README's first Python block as a user would (en_twner installed in
this environment) and record what it prints, for the README's "prints" line.

    pip install packages/en_twner-0.4.0/dist/en_twner-0.4.0-py3-none-any.whl
    python benchmarks/readme_example.py --output docs/runs/build/readme-example.json
"""
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parent.parent


def main(output: Path = typer.Option(Path("metrics/readme-example.json"), "--output", "-o")) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    printed = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.splitlines()
    if len(printed) != 2:
        raise SystemExit(f"the README's example printed {len(printed)} lines, not its two: {printed}")
    record = {"entities": printed[0], "similarity": printed[1], "en_twner": version("en_twner"), "code": code}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print("\n".join(printed))


if __name__ == "__main__":
    typer.run(main)
