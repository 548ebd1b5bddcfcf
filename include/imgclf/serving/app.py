"""The prediction service: a small ASGI app (Starlette) on the champion's pyfunc, no Spark.

Routes:
  GET  /             the page: drop a photo, see the class, the probabilities, the version
  POST /predict      multipart form, field ``image`` (``curl -F image=@photo.jpg``), or the raw
                     bytes with an ``image/*`` or ``application/octet-stream`` content type:
                     ``{"class", "probabilities", "model_version", "model_run_id", ...}``
  POST /invocations  MLflow's scoring protocol (``dataframe_split``, ``dataframe_records`` or
                     ``inputs``, the ``content`` column base64-encoded): ``{"predictions"}``
  GET  /model        what is served; ``GET /health``: 200 when a model is loaded, else 503

Untrusted input meets one boundary: the body is counted as it arrives and refused past
``IMGCLF_MAX_FILE_BYTES`` plus a little multipart framing (413, before it is all read); the
image goes through the pipeline's own rule (``imgclf.image_acceptance``: the pixel limit from
the header, every pixel decodes), so a refusal is a 4xx that says why, and the process goes on
serving. At most ``max_inflight`` requests are read or scored at once (the rest wait), bounding
memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import time
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from imgclf.image_acceptance import ImageRejectedError
from imgclf.serving.champion import Champion, NoChampionError

log = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and part headers beside the image itself
JSON_IMAGES = 16  # images per /invocations request


class RequestError(Exception):
    """A request refused with ``status`` and a reason for the caller."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


class _CappedReceive:
    """The ASGI ``receive`` of a request, refusing a body past ``cap`` bytes as it arrives."""

    def __init__(self, receive: Any, cap: int):
        self.receive, self.cap, self.seen = receive, cap, 0

    async def __call__(self) -> Any:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.cap:
                raise RequestError(413, f"request body over {self.cap:,} bytes")
        return message


def create_app(
    champion: Champion,
    *,
    max_file_bytes: int,
    refresh_seconds: float = 5.0,
    max_inflight: int = 4,
) -> Starlette:
    """The app serving ``champion``, refreshed from the registry every ``refresh_seconds``."""
    body_cap = max_file_bytes + FORM_OVERHEAD
    inflight = asyncio.Semaphore(max_inflight)
    page = resources.files("imgclf.serving").joinpath("page.html").read_text()

    async def follow_alias() -> None:
        while True:
            await asyncio.sleep(refresh_seconds)
            try:
                await run_in_threadpool(champion.refresh)
            except Exception:  # never let the follower die: the next tick tries again
                log.exception("champion refresh failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await run_in_threadpool(champion.refresh)  # the first load: before the first request
        task = asyncio.create_task(follow_alias())
        try:
            yield
        finally:
            task.cancel()

    def check_declared(request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError(400, "Content-Length is not a number")
            if int(declared) > body_cap:
                raise RequestError(413, f"request body of {int(declared):,} bytes is over "
                                        f"{body_cap:,} (IMGCLF_MAX_FILE_BYTES)")  # fmt: skip
            if int(declared) == 0:
                raise RequestError(400, "empty request body")

    async def read_body(request: Request) -> bytes:
        check_declared(request)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > body_cap:
                raise RequestError(413, f"request body over {body_cap:,} bytes "
                                        "(IMGCLF_MAX_FILE_BYTES)")  # fmt: skip
            chunks.append(chunk)
        return b"".join(chunks)

    async def image_of(request: Request) -> bytes:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            check_declared(request)
            capped = Request(request.scope, _CappedReceive(request.receive, body_cap))
            try:
                form = await capped.form(max_files=1, max_fields=4, max_part_size=64 * 1024)
            except RequestError:
                raise
            except Exception as exc:  # malformed multipart: Starlette's own message
                raise RequestError(400, f"malformed multipart form: {exc}") from None
            try:
                upload = form.get("image")
                if not isinstance(upload, UploadFile):
                    raise RequestError(400, "no file in the form field 'image' "
                                            "(curl -F image=@photo.jpg)")  # fmt: skip
                data = await upload.read(max_file_bytes + 1)
            finally:
                await form.close()
            if len(data) > max_file_bytes:
                raise RequestError(413, f"image over {max_file_bytes:,} bytes "
                                        "(IMGCLF_MAX_FILE_BYTES)")  # fmt: skip
            return data
        if kind.startswith("image/") or kind == "application/octet-stream":
            data = await read_body(request)
            if len(data) > max_file_bytes:
                raise RequestError(413, f"image over {max_file_bytes:,} bytes")
            return data
        raise RequestError(
            415,
            f"content type {kind or 'none'!r} is not accepted: send multipart/form-data with "
            "the file in the field 'image', or the image bytes as image/* or "
            "application/octet-stream",
        )

    def served() -> Any:
        try:
            return champion.get()
        except NoChampionError as exc:
            raise RequestError(503, str(exc)) from None

    async def homepage(request: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": "default-src 'self'; "
                            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                            "img-src 'self' blob:"})  # fmt: skip

    async def predict(request: Request) -> Response:
        async with inflight:
            try:
                data = await image_of(request)
                loaded = served()
                started = time.perf_counter()
                try:
                    result = await run_in_threadpool(loaded.model.predict_bytes, data)
                except ImageRejectedError as exc:
                    raise RequestError(422, f"image refused: {_plain(exc)}") from None
            except RequestError as exc:
                return _error(exc.status, exc.reason)
            except ClientDisconnect:
                return _error(400, "the client went away before the body was complete")
        return JSONResponse(
            {
                "class": result["class"],
                "probabilities": result["probabilities"],
                **loaded.info(),
                "seconds": round(time.perf_counter() - started, 4),
            }
        )

    async def invocations(request: Request) -> Response:
        async with inflight:
            try:
                kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind != "application/json":
                    raise RequestError(415, "send application/json: MLflow's dataframe_split, "
                                            "dataframe_records or inputs form")  # fmt: skip
                contents = _decode_invocation(await read_body(request))
                loaded = served()
                rows = await run_in_threadpool(loaded.model.score, contents)
            except RequestError as exc:
                return _error(exc.status, exc.reason)
            except ClientDisconnect:
                return _error(400, "the client went away before the body was complete")
        return JSONResponse({"predictions": rows, **loaded.info()})

    async def model_info(request: Request) -> Response:
        try:
            loaded = served()
        except RequestError as exc:
            return _error(exc.status, exc.reason)
        return JSONResponse({**loaded.info(), "load_seconds": loaded.load_seconds,
                             "loaded_at": loaded.loaded_at})  # fmt: skip

    async def health(request: Request) -> Response:
        if champion.current is None:
            return _error(503, champion.error or "no model loaded yet")
        return JSONResponse({"status": "ok", "model_version": champion.current.version})

    return Starlette(
        routes=[
            Route("/", homepage),
            Route("/predict", predict, methods=["POST"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/model", model_info),
            Route("/health", health),
        ],
        lifespan=lifespan,
    )


def _plain(exc: Exception) -> str:
    """The reason without Pillow's ``<_io.BytesIO object at 0x...>`` (an address, not news)."""
    return re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc))


def _decode_invocation(body: bytes) -> list[bytes]:
    """The images of an MLflow scoring request (``content`` column, base64)."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RequestError(400, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError(400, "body is not a JSON object")
    values: Any = None
    if "dataframe_split" in doc:
        split = doc["dataframe_split"]
        if isinstance(split, dict) and split.get("columns") == ["content"]:
            values = [row[0] if isinstance(row, list) and len(row) == 1 else None
                      for row in split.get("data") or []]  # fmt: skip
    elif "dataframe_records" in doc and isinstance(doc["dataframe_records"], list):
        values = [r.get("content") if isinstance(r, dict) else None
                  for r in doc["dataframe_records"]]  # fmt: skip
    elif "inputs" in doc:
        inputs = doc["inputs"]
        values = inputs.get("content") if isinstance(inputs, dict) else None
    if not isinstance(values, list) or not values:
        raise RequestError(400, "expected one column 'content' of base64 images in "
                                "dataframe_split, dataframe_records or inputs")  # fmt: skip
    if len(values) > JSON_IMAGES:
        raise RequestError(413, f"{len(values)} images; at most {JSON_IMAGES} per request")
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise RequestError(400, f"row {i}: 'content' is not a base64 string")
        try:
            out.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise RequestError(400, f"row {i}: 'content' is not valid base64") from None
    return out
