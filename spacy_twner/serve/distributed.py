"""Annotate many files on a Dask cluster: one pipeline load per worker, one task per file.

Why Dask distributed: the work is independent files, and Dask's workers are
long-lived processes that keep a loaded pipeline between tasks (a
WorkerPlugin loads it once per worker). The same client code runs on a local
multi-process cluster and on a real one (`dask scheduler` + `dask worker` on
each machine, or dask-jobqueue / dask-kubernetes), and it is pure Python and
light to install. Ray would fit as well, but brings its own object store and
a much heavier install for nothing this file-per-task shape needs.
"""
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from .annotate import annotate_file

PLUGIN = "twner-pipeline"


class PipelinePlugin(WorkerPlugin):
    """Loads the pipeline when a worker starts (or joins), once, and keeps it."""

    name = PLUGIN

    def __init__(self, model: str, torch_threads: int = 1) -> None:
        self.model = model
        self.torch_threads = torch_threads
        self.nlp = None
        self.loads = 0

    def setup(self, worker) -> None:
        import spacy

        self.nlp = spacy.load(self.model)
        self.loads += 1


def _loaded_pipeline(dask_worker) -> Any:
    plugin = dask_worker.plugins.get(PLUGIN)
    return (plugin.model, plugin.torch_threads) if plugin else None


def annotate_on_worker(input_path: str, output_path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """A task: annotate one file with the worker's pipeline (see annotate.annotate_file)."""
    import torch

    worker = get_worker()
    plugin = worker.plugins[PLUGIN]
    # Per task: OpenMP's thread count belongs to the calling thread, and tasks run
    # in the worker's executor threads (where Dask has set OMP_NUM_THREADS=1).
    torch.set_num_threads(plugin.torch_threads)
    skipped: List[str] = []
    counts = annotate_file(
        plugin.nlp, Path(input_path), Path(output_path), on_skip=lambda bad: skipped.append(str(bad)), **options
    )
    return {"input": input_path, "output": output_path, "written": counts.written,
            "skipped": skipped, "worker": worker.address, "pid": os.getpid()}  # fmt: skip


def annotate_files(
    client: Client,
    model: str,
    inputs: Sequence[Path],
    output_dir: Path,
    *,
    torch_threads: int = 1,
    progress: bool = False,
    **options: Any,
) -> List[Dict[str, Any]]:
    """Annotate each input file into output_dir/<stem>.jsonl on the cluster; results in input order.

    Paths must be readable and writable by every worker (a shared or the same
    file system). The first failing file raises here, with its file and line.
    """
    outputs = [Path(output_dir) / f"{Path(p).stem}.jsonl" for p in inputs]
    if len(set(outputs)) != len(outputs):
        raise ValueError("two input files have the same name stem; their outputs would overwrite each other")
    # Registering again would reload the pipeline on every worker; only do it when it differs.
    if set(client.run(_loaded_pipeline).values()) != {(model, torch_threads)}:
        client.register_plugin(PipelinePlugin(model, torch_threads))
    futures = client.map(annotate_on_worker, [str(p) for p in inputs], [str(p) for p in outputs],
                         options=options, pure=False)  # fmt: skip
    done = as_completed(futures)
    if progress:
        from tqdm import tqdm

        done = tqdm(done, total=len(futures), desc="files", unit=" files")
    for future in done:
        future.result()  # raise the first failure now, not after every file is done
    return [future.result() for future in futures]


def annotate_on_cluster(
    model: str,
    inputs: Sequence[Path],
    output_dir: Path,
    *,
    scheduler: Optional[str] = None,
    workers: int = 2,
    torch_threads: int = 1,
    on_start: Callable[[str], None] = lambda dashboard: None,
    **options: Any,
) -> List[Dict[str, Any]]:
    """annotate_files on the scheduler at that address, or on a local cluster of
    `workers` processes that is closed however the run ends."""
    with ExitStack() as stack:
        if scheduler is None:
            scheduler = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True))
        client = stack.enter_context(Client(scheduler))
        on_start(client.dashboard_link)
        return annotate_files(client, model, inputs, output_dir, torch_threads=torch_threads, progress=True, **options)
