"""The HTTP service: a FastAPI app around one loaded pipeline.

- POST /v1/ents: texts -> per text its entities (text, label, start/end
  characters, confidence) and, on request, its sentence embedding and the
  displaCy rendering.
- POST /v1/similarity: two texts, in any of the student's languages -> cosine.
- GET /healthz, GET / (a demo page, every asset served from here), and
  FastAPI's own OpenAPI schema (/openapi.json, /docs).

Bad input never reaches the pipeline: it gets a 4xx with a JSON body that
names the field and the problem, {"error": {"status", "field", "message"}}.
"""
import json
import os
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from ..loading import load_pipeline
from .batching import MicroBatcher
from .records import cosine, embedding_record, entity_record, unicode_problem

STATIC = Path(__file__).parent / "static"
SETTINGS_ENV = "TWNER_SERVE_SETTINGS"  # the settings of a worker process, as JSON


@dataclass
class ServeSettings:
    model: str
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_texts: int = 256
    max_chars: int = 10_000
    max_body_bytes: int = 2_000_000
    # False: each request runs its own nlp.pipe call in the thread pool (the naive server, for comparison)
    batching: bool = True


class EntsRequest(BaseModel):
    texts: List[str] = Field(..., description="Texts to annotate (one tweet each)")
    embeddings: bool = Field(False, description="Also return each text's sentence embedding")
    render: bool = Field(False, description="Also return displaCy's HTML rendering of the entities")


class Entity(BaseModel):
    text: str
    label: str
    start: int = Field(..., description="Character offset where the entity starts")
    end: int = Field(..., description="Character offset where it ends (exclusive)")
    confidence: Optional[float] = Field(None, description="Share of the beam parses that hold this entity, in [0, 1]")


class Annotation(BaseModel):
    entities: List[Entity]
    embedding: Optional[List[float]] = None
    html: Optional[str] = None


class EntsResponse(BaseModel):
    results: List[Annotation]


class SimilarityRequest(BaseModel):
    a: str = Field(..., description="First text")
    b: str = Field(..., description="Second text")


class SimilarityResponse(BaseModel):
    cosine: float


class ServiceError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is a 413, whether it says its
    length up front or arrives in chunks; nothing over the limit is kept."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            response = error_response(413, "body", f"request body over {self.limit:,} bytes")
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise ServiceError(413, "body", f"request body over {self.limit:,} bytes")
            return message

        await self.app(scope, limited_receive, send)


def error_response(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "field": field, "message": message}}, status_code=status)


def check_texts(texts: List[str], settings: ServeSettings, field: str = "texts") -> None:
    if not texts:
        raise ServiceError(422, field, "at least one text is needed")
    if len(texts) > settings.max_texts:
        raise ServiceError(422, field, f"{len(texts)} texts; at most {settings.max_texts} per request")
    for i, text in enumerate(texts):
        check_text(text, settings, f"{field}[{i}]")


def check_text(text: str, settings: ServeSettings, field: str) -> None:
    if len(text) > settings.max_chars:
        raise ServiceError(422, field, f"{len(text):,} characters; at most {settings.max_chars:,}")
    problem = unicode_problem(text)
    if problem:
        raise ServiceError(422, field, f"{problem}: not Unicode text")


class Pipeline:
    """The loaded pipeline and what the endpoints ask of it (run in a worker thread)."""

    def __init__(self, model: str) -> None:
        self.nlp = load_pipeline(model)
        self.embedder = self.nlp.get_pipe("sentence_embedder") if "sentence_embedder" in self.nlp.pipe_names else None

    def annotate(self, texts: List[str], options: List[Dict[str, bool]]) -> List[Dict[str, Any]]:
        from spacy import displacy

        results = []
        for doc, opts in zip(self.nlp.pipe(texts), options):
            result: Dict[str, Any] = {"entities": [entity_record(ent) for ent in doc.ents]}
            if opts.get("embeddings"):
                result["embedding"] = embedding_record(doc)
            if opts.get("render"):
                result["html"] = displacy.render(doc, style="ent", page=False, jupyter=False)
            results.append(result)
        return results

    def similarity(self, a: str, b: str) -> float:
        first, second = self.embedder.pipe([self.nlp.make_doc(a), self.nlp.make_doc(b)])
        return cosine(first._.embedding, second._.embedding)


def create_app(settings: Optional[ServeSettings] = None) -> FastAPI:
    """The app; with no settings, those of the environment (a uvicorn worker process)."""
    import anyio

    if settings is None:
        settings = ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
    state: Dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["pipeline"] = pipeline = await anyio.to_thread.run_sync(Pipeline, settings.model)
        if settings.batching:
            state["batcher"] = MicroBatcher(pipeline.annotate, settings.max_batch, settings.max_wait_ms)
            state["batcher"].start()
        yield
        if settings.batching:
            await state["batcher"].stop()  # answers what is queued first

    requests = {"received": 0, "in_flight": 0}

    @contextmanager
    def counted() -> Iterator[None]:
        """Requests received and in flight, for /healthz: what a drain or a load
        balancer watches before it stops a server."""
        requests["received"] += 1
        requests["in_flight"] += 1
        try:
            yield
        finally:
            requests["in_flight"] -= 1

    app = FastAPI(title="en_twner", description="Named entities in tweets, with confidences, and multilingual similarity.",
                  lifespan=lifespan)  # fmt: skip

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError):
        return error_response(error.status, error.field, error.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        location = [str(part) for part in first["loc"] if part != "body"]
        field = location[0] + "".join(f"[{part}]" for part in location[1:]) if location else "body"
        return error_response(422, field, first["msg"])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return error_response(error.status_code, "path" if error.status_code == 404 else "request", str(error.detail))

    async def read_json(request: Request, model):
        """The body as `model`: bytes that are not UTF-8 are a 400 of their own
        (FastAPI would decode them with replacement characters)."""
        body = await request.body()
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ServiceError(400, "body", f"not valid UTF-8 at byte offset {e.start}") from None
        try:
            data = json.loads(body)
        except ValueError as e:
            raise ServiceError(400, "body", f"not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ServiceError(422, "body", f"expected a JSON object, got {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None

    @app.post("/v1/ents", response_model=EntsResponse, response_model_exclude_none=True,
              openapi_extra={"requestBody": {"content": {"application/json": {"schema": EntsRequest.model_json_schema()}}, "required": True}})  # fmt: skip
    async def ents(request: Request) -> Dict[str, Any]:
        """Entities of each text, in input order."""
        with counted():
            query = await read_json(request, EntsRequest)
            check_texts(query.texts, settings)
            options = {"embeddings": query.embeddings, "render": query.render}
            if settings.batching:
                results = await state["batcher"].submit(query.texts, options)
            else:
                results = await anyio.to_thread.run_sync(state["pipeline"].annotate, query.texts, [options] * len(query.texts))
            return {"results": results}

    @app.post("/v1/similarity", response_model=SimilarityResponse,
              openapi_extra={"requestBody": {"content": {"application/json": {"schema": SimilarityRequest.model_json_schema()}}, "required": True}})  # fmt: skip
    async def similarity(request: Request) -> Dict[str, float]:
        """Cosine of the two texts' sentence embeddings (multilingual)."""
        with counted():
            query = await read_json(request, SimilarityRequest)
            for field, text in (("a", query.a), ("b", query.b)):
                check_text(text, settings, field)
            if state["pipeline"].embedder is None:
                raise ServiceError(422, "model", "this pipeline has no sentence_embedder")
            return {"cosine": await anyio.to_thread.run_sync(state["pipeline"].similarity, query.a, query.b)}

    @app.get("/healthz")
    async def healthz() -> Dict[str, Any]:
        nlp = state["pipeline"].nlp
        return {"status": "ok", "model": f"{nlp.meta['lang']}_{nlp.meta['name']}", "version": nlp.meta["version"],
                "pipeline": nlp.pipe_names, "settings": asdict(settings), "requests": dict(requests)}  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def run_server(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """uvicorn with graceful shutdown: on SIGTERM it stops accepting, lets the
    requests in flight finish (up to 30 s), then the batcher drains."""
    import uvicorn

    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    uvicorn.run("spacy_twner.serve.app:create_app", factory=True, host=host, port=port, workers=workers,
                timeout_graceful_shutdown=30, log_level="info")  # fmt: skip
