"""`intracoder studio`: the HTTP side. FastAPI serves one page of our own (static/) and a JSON
API over the same functions the CLI calls: faceset sorting and dropping, the train command
as a background job, convert's single-frame preview and its settings file, evaluate's
report. Everything it reads or writes is under the workspace folder.

FastAPI over Gradio: a page of our own needs no web fonts or scripts from a CDN (Gradio's
default theme loads its fonts from Google), the pinned dependencies are three small
packages instead of Gradio's dozens, and the page can show a full-resolution frame pair
the moment it is ready.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import cv2
import numpy as np
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from intracoder.errors import UserError
from intracoder.studio import masks, security
from intracoder.studio import workspace as ws
from intracoder.studio.config import StudioConfig
from intracoder.studio.jobs import Job

STATIC = Path(__file__).with_name("static")


def _png(image: np.ndarray) -> Response:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise UserError("could not encode the image")
    return Response(data.tobytes(), media_type="image/png", headers={"Cache-Control": "no-store"})


class Previews:
    """Loaded convert jobs (model + detector), one per model folder: the first frame of a
    model takes a model load, every later one only the frame's own work."""

    def __init__(self):
        self._jobs: dict[str, object] = {}
        self._lock = threading.Lock()

    def frame(self, model: Path, video: Path, index: int, settings: dict, mask: bool = False):
        from intracoder.convert.pipeline import ConvertConfig, load_job
        from intracoder.convert.preview import preview_frame

        with self._lock:  # one frame at a time: the model and the tracker are shared
            key = str(model)
            if key not in self._jobs:
                self._jobs[key] = load_job(ConvertConfig(input=str(video), output="",
                                                         model=str(model)))
            return preview_frame(self._jobs[key], video, index, ws.settings_from(settings),
                                 mask_view=mask)


def _refusal(refused: security.Refused, path: str) -> Response:
    if refused.status == 401 and path in security.PAGES:  # a person at the browser: plain words
        return PlainTextResponse(security.NO_TOKEN_PAGE, status_code=401)
    return JSONResponse({"error": str(refused)}, status_code=refused.status)


def _internal(exc: Exception) -> Response:
    # A bug still gets one line in the page; its traceback goes to the studio's stderr.
    import traceback

    traceback.print_exception(exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"},
                        status_code=500)


def create_app(config: StudioConfig, token: str | None = None) -> FastAPI:
    """The studio's app; ``token`` is the per-run secret every request must carry (a new
    one when None; tests pass their own)."""
    root = Path(config.workspace).resolve()
    app = FastAPI(title="intracoder studio", docs_url=None, redoc_url=None)
    app.state.token = token or security.new_token()
    gate = security.Gate(app.state.token, config.host)
    previews = Previews()

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        query_token = request.query_params.get("token")
        try:
            gate.check(request.method, path, request.url.scheme, request.headers,
                       query_token, request.cookies.get("token"))
            response = await call_next(request)
        except security.Refused as refused:
            response = _refusal(refused, path)
        except Exception as exc:  # here, so that a 500 carries the headers below too
            response = _internal(exc)
        if path in security.PAGES and gate.valid(query_token) and response.status_code == 200:
            # the page's own fetches and images, and a reload, carry the token from here on
            response.set_cookie("token", app.state.token, httponly=True, samesite="strict",
                                path="/")
        csp = security.FILES_CSP if path.startswith("/files/") else security.PAGE_CSP
        response.headers["Content-Security-Policy"] = csp
        response.headers.update(security.HEADERS)
        return response

    @app.exception_handler(UserError)
    async def user_error(request, exc: UserError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(security.Refused)
    async def refused(request, exc: security.Refused):
        return _refusal(exc, request.url.path)

    def inside(path: str, kind: str = "path") -> Path:
        return ws.inside(root, path, kind)

    masks.register(app, root, inside)  # the Masks tab's routes (studio/masks.py)

    @app.get("/api/workspace")
    def workspace():
        return ws.listing(root)

    # --- facesets -------------------------------------------------------------------------
    @app.get("/api/faceset")
    def faceset(dir: str):
        return ws.faceset_rows(inside(dir, "faceset"))

    @app.get("/api/faceset/crop")
    def crop(dir: str, name: str, size: int = 96):
        return _png(ws.thumbnail(inside(dir, "faceset"), name, size))

    @app.get("/api/faceset/plots.png")
    def plots(dir: str):
        return Response(ws.distribution_png(inside(dir, "faceset")), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.post("/api/faceset/sort")
    def sort(body: dict = Body(...)):
        from intracoder.faces.sort import sort_faces, write_order

        folder = inside(body["dir"], "faceset")
        result = sort_faces(folder, body.get("by", "blur"))
        write_order(folder, result)
        return {"names": result.names, "seconds": result.seconds}

    @app.post("/api/faceset/drop")
    def drop(body: dict = Body(...)):
        from intracoder.faces.sort import move_to_dropped

        folder = inside(body["dir"], "faceset")
        names = [str(n) for n in body.get("names", [])]
        bad = [n for n in names if Path(n).name != n or not (folder / n).is_file()]
        if bad or not names:
            raise UserError(f"{bad[0]}: no such crop in {folder.name}" if bad
                            else "select the faces to drop first")
        return {"dropped": move_to_dropped(folder, names)}

    @app.post("/api/faceset/restore")
    def restore(body: dict = Body(...)):
        from intracoder.faces.sort import restore

        return {"restored": restore(inside(body["dir"], "faceset"))}

    # --- training -------------------------------------------------------------------------
    def train_job(model: Path) -> Job:
        return Job(model / ".studio" / "train")

    @app.post("/api/train/start")
    def train_start(body: dict = Body(...)):
        model = inside(body["model"], "new")
        args = ["train", "--a", str(inside(body["a"], "faceset")),
                "--b", str(inside(body["b"], "faceset")), "--model", str(model)]
        for key in ("preset", "minutes", "iterations", "preview_every"):
            if body.get(key) not in (None, ""):
                args += [f"--{key.replace('_', '-')}", str(body[key])]
        train_job(model).start(args)
        return {"started": True}

    @app.post("/api/train/stop")
    def train_stop(body: dict = Body(...)):
        train_job(inside(body["model"], "model")).stop()
        return {"stopped": True}

    @app.get("/api/train/status")
    def train_status(model: str):
        folder = inside(model, "new")
        return {**train_job(folder).status().to_dict(), **ws.model_summary(folder)}

    @app.get("/api/model/image")
    def model_image(model: str, name: str):
        if name not in ("preview.png", "loss.png"):
            raise UserError(f"{name}: not a model image")
        path = inside(model, "model") / name
        if not path.is_file():
            raise UserError(f"{path.name} is not written yet (the first preview comes after "
                            "--preview-every iterations)")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    # --- convert --------------------------------------------------------------------------
    @app.get("/api/convert/info")
    def convert_info(video: str, model: str):
        return ws.convert_info(inside(video, "video"), inside(model, "model"))

    @app.get("/api/convert/frame.png")
    def convert_frame(video: str, model: str, frame: int, which: str = "after",
                      settings: str = Query("{}")):
        import json

        if which not in ("before", "after", "mask"):  # mask: the after frame's blend mask
            raise UserError(f"which: must be before, after or mask, got {which[:20]!r}")
        before, after = previews.frame(inside(model, "model"), inside(video, "video"), frame,
                                       json.loads(settings), mask=which == "mask")
        return _png(before if which == "before" else after)

    @app.post("/api/convert/apply_from")
    def apply_from(body: dict = Body(...)):
        return ws.apply_from(inside(body["model"], "model"), int(body["frame"]),
                             body.get("settings", {}))

    def render_job(output: Path) -> Job:
        return Job(output.with_name(f".{output.name}.studio"))

    @app.post("/api/convert/render")
    def render(body: dict = Body(...)):
        model, video = inside(body["model"], "model"), inside(body["video"], "video")
        output = inside(body["output"], "new")
        args = ["convert", "--model", str(model), str(video), str(output)]
        settings = ws.settings_path(model)
        if settings.is_file():
            args += ["--settings", str(settings)]
        render_job(output).start(args)
        return {"started": True}

    @app.get("/api/convert/status")
    def render_status(output: str):
        return render_job(inside(output, "new")).status().to_dict()

    # --- report ---------------------------------------------------------------------------
    def report_job(swapped: Path) -> Job:
        return Job(swapped.with_name(f".{swapped.name}.report"))

    @app.post("/api/report/start")
    def report_start(body: dict = Body(...)):
        swapped = inside(body["swapped"], "video")
        args = ["evaluate", "--model", str(inside(body["model"], "model")),
                "--source", str(inside(body["source"], "video")), "--swapped", str(swapped),
                "--report", str(ws.report_dir(swapped))]
        report_job(swapped).start(args)
        return {"started": True, "url": ws.report_url(root, swapped)}

    @app.get("/api/report/status")
    def report_status(swapped: str):
        path = inside(swapped, "video")
        return {**report_job(path).status().to_dict(), "url": ws.report_url(root, path),
                "ready": (ws.report_dir(path) / "index.html").is_file()}

    @app.get("/files/{path:path}")
    def files(path: str):
        return FileResponse(security.served_file(root, path),
                            headers={"Cache-Control": "no-store"})

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


def serve(config: StudioConfig) -> None:
    import uvicorn

    app = create_app(config)
    print(f"open {security.page_url(config.host, config.port, app.state.token)} in a browser "
          "(the token is new each run; keep it to yourself)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
