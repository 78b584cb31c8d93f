"""A training logger that also records how long training took.

spaCy's ConsoleLogger prints (and can save) scores and losses per
evaluation, but no clock; the run comparison (`twner compare`) needs the
train wall time on the machine that trained, so this logger adds it.
"""
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional, Tuple

import srsly
from spacy.language import Language
from spacy.training.loggers import console_logger_v3


def timed_console_logger(
    progress_bar: Optional[str] = None, path: Optional[Path] = None
) -> Callable[[Language], Tuple[Callable[[Optional[Dict[str, Any]]], None], Callable[[], None]]]:
    """spaCy's console output, plus one JSON line per evaluation with the
    seconds since training started written to `path` (nothing when null)."""
    console = console_logger_v3(progress_bar=progress_bar)

    def setup(nlp: Language, stdout: IO = sys.stdout, stderr: IO = sys.stderr):
        log_step, finalize = console(nlp, stdout, stderr)
        start = time.perf_counter()
        records = []

        def log(info: Optional[Dict[str, Any]]) -> None:
            log_step(info)
            if info is None or path is None:
                return
            records.append({
                "step": info["step"], "epoch": info["epoch"],
                "seconds": round(time.perf_counter() - start, 1),
                "score": float(info["score"]),
                "scores": {k: v for k, v in info["other_scores"].items() if isinstance(v, (int, float))},
                "losses": {k: float(v) for k, v in info["losses"].items()},
            })  # fmt: skip
            # rewritten whole each time: an interrupted run still leaves a valid log
            srsly.write_jsonl(path, records)

        return log, finalize

    return setup
