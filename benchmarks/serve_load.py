"""The service under load, on loopback: `twner serve` with micro-batching
against the naive server (one nlp.pipe call per request, in the thread
pool), both against the same pipeline's in-process batch throughput.

  python benchmarks/serve_load.py training/wnut16-trf/model-int8 --tweets assets/tweets-unlabeled \\
      --clients 32 --requests 3000 --output docs/runs/serve.json

Each client sends single-tweet requests one after another (asyncio, httpx);
the clock runs from the first request to the last answer. Servers start one
after the other on a free port; nothing leaves the machine.
"""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Dict, List

import httpx
import numpy
import typer

from spacy_twner.data.corpus import first_texts

app = typer.Typer(add_completion=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_throughput(model: str, tweets: List[str]) -> Dict[str, Any]:
    """The same pipeline in a process of its own: nlp.pipe(batch_size=64) tweets/s."""
    script = (
        "import json, sys, time, spacy\n"
        "nlp = spacy.load(sys.argv[1]); tweets = json.loads(sys.stdin.read())\n"
        "list(nlp.pipe(tweets[:64], batch_size=64)); start = time.perf_counter()\n"
        "for _ in nlp.pipe(tweets, batch_size=64): pass\n"
        "print(len(tweets) / (time.perf_counter() - start))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, model], input=json.dumps(tweets), capture_output=True, text=True, check=True)
    return {"tweets": len(tweets), "tweets_per_s": round(float(out.stdout.strip().splitlines()[-1]), 1)}


async def load(url: str, tweets: List[str], clients: int) -> Dict[str, Any]:
    latencies: List[float] = []
    errors = 0
    queue = list(reversed(tweets))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue:
            text = queue.pop()
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/ents", json={"texts": [text]})
                ok = response.status_code == 200 and len(response.json()["results"]) == 1
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    ms = numpy.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors, "seconds": round(seconds, 2),
            "requests_per_s": round(len(latencies) / seconds, 1),
            "latency_ms": {p: round(float(numpy.percentile(ms, q)), 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}}  # fmt: skip


def serve(model: str, batching: bool, tweets: List[str], clients: int) -> Dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, "-m", "spacy_twner", "serve", model, "--port", str(port), "--batching" if batching else "--no-batching"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        asyncio.run(load(url, tweets[:64], clients))  # warm-up
        return asyncio.run(load(url, tweets, clients))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)


@app.command()
def main(
    model: str = typer.Argument(..., help="Pipeline directory or package"),
    tweets_dir: Path = typer.Option(..., "--tweets", help="Folder of unlabeled tweets (*.txt)", exists=True, file_okay=False),
    clients: int = typer.Option(32, "--clients", help="Concurrent clients"),
    requests: int = typer.Option(3000, "--requests", help="Single-tweet requests per server"),
    output: Path = typer.Option(Path("metrics/serve.json"), "--output", "-o", help="JSON to write"),
) -> None:
    tweets = first_texts(tweets_dir, requests)
    results = {"batch": batch_throughput(model, tweets), "servers": {}}
    for name, batching in (("micro-batched", True), ("naive", False)):
        results["servers"][name] = serve(model, batching, tweets, clients)
    results["_machine"] = {"cpus": os.cpu_count(), "model": model, "date": str(date.today())}
    output.write_text(json.dumps(results, indent=2))
    from spacy_twner.evaluation.compare import serve_markdown

    print(serve_markdown(results))
    print(f"wrote {output}")


if __name__ == "__main__":
    app()
