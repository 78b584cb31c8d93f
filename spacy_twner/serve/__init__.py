"""`twner serve`: the pipeline behind an HTTP API with a demo page."""
from .app import ServeSettings, create_app, run_server

__all__ = ["ServeSettings", "create_app", "run_server"]
