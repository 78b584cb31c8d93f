"""Micro-batching: concurrent requests share one `nlp.pipe` call.

A transformer on a CPU annotates a batch of 64 tweets far faster than 64
single tweets one by one. Requests are queued; a single task takes the first
one, waits up to `max_wait_ms` for more (or until `max_batch` texts are
there), and runs them as one batch in a worker thread, so the event loop keeps
accepting requests meanwhile. Each request gets its own results back, in its
own order.
"""
import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence


@dataclass
class _Job:
    texts: Sequence[str]
    options: Any
    future: "asyncio.Future[List[Any]]" = field(default=None)  # type: ignore[assignment]


class MicroBatcher:
    """Batches the texts of concurrent requests for `work(texts, options_per_text)`.

    work runs in one worker thread and returns one result per text; requests
    whose options differ still share a batch (the options travel per text).
    """

    def __init__(self, work: Callable[[List[str], List[Any]], List[Any]], max_batch: int = 64, max_wait_ms: float = 5.0) -> None:
        self.work, self.max_batch, self.max_wait = work, max_batch, max_wait_ms / 1000
        self.queue: "asyncio.Queue[Optional[_Job]]" = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlp")
        self.task: Optional[asyncio.Task] = None
        self.batches = 0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop (requests in flight get their answers)."""
        await self.queue.put(None)
        if self.task:
            await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, texts: Sequence[str], options: Any = None) -> List[Any]:
        job = _Job(texts, options, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            jobs, size = [first], len(first.texts)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    job = self.queue.get_nowait() if loop.time() >= deadline else await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                size += len(job.texts)
            texts = [t for job in jobs for t in job.texts]
            options = [job.options for job in jobs for _ in job.texts]
            try:
                results = await loop.run_in_executor(self.executor, self.work, texts, options)
            except Exception as error:  # one bad batch fails its requests, not the service
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            self.batches += 1
            start = 0
            for job in jobs:
                if not job.future.done():  # a client that went away cancelled its future
                    job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)
