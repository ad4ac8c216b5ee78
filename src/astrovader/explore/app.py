"""The explorer's web app: one static page (plain JavaScript, served from the package, nothing
fetched from elsewhere) over a JSON API. The browser only ever receives aggregates, one page of
members, one object or one image at a time.

Files: the page's own files by name from the package's static folder (a fixed list made at
start), images by catalogue id, and the export written into RUN/explore/. No request names a
path, so nothing outside the run folder (and the package) can be read through the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from astrovader.errors import AstroVaDErError
from astrovader.explore.annotations import Annotations
from astrovader.explore.catalogue import PAGE_LIMIT, SILHOUETTE_MEMBERS, Catalogue, MemberQuery, UnknownItem
from astrovader.explore.export import export_catalogue, export_name
from astrovader.explore.images import SAMPLES_LIMIT, Images
from astrovader.explore.latent import LatentMap

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {path.name: path for path in STATIC.iterdir() if path.is_file()}
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
MAP_CATEGORIES = 12  # categories coloured on the map; the rest are "other"
log = logging.getLogger("uvicorn.error")


@dataclass
class Explorer:
    catalogue: Catalogue
    annotations: Annotations
    images: Images
    latent: LatentMap
    folder: Path  # RUN/explore: annotations, latent map, exports


def open_explorer(run_dir: str | Path, predictions: str | Path | None = None, data: str | Path | None = None,
                  map_method: str = "tsne") -> Explorer:
    """Check the run against its catalogue and cache and load the annotations (InputError, one
    line, when they do not fit); the latent map starts computing in the background if needed."""
    catalogue = Catalogue(run_dir, predictions, data)
    folder = catalogue.run.folder / "explore"
    annotations = Annotations(folder / "annotations.csv", catalogue.n_components)
    latent = LatentMap(catalogue, folder, map_method)
    latent.start()
    return Explorer(catalogue, annotations, Images(catalogue), latent, folder)


class ComponentAnnotation(BaseModel):
    component: int
    name: str = Field("", max_length=80)
    note: str = Field("", max_length=2000)


class ObjectAnnotation(BaseModel):
    id_str: str = Field(..., max_length=200)
    flag: str = Field("", max_length=40)
    note: str = Field("", max_length=2000)


def create_app(explorer: Explorer, trusted_hosts: list[str] | None = None) -> FastAPI:
    app = FastAPI(title="astrovader explore", docs_url=None, redoc_url=None, openapi_url=None)
    add_error_handlers(app)
    if trusted_hosts:  # a page on another site cannot reach a loopback server by DNS rebinding
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts)
    add_page_routes(app)
    add_catalogue_routes(app, explorer)
    add_picture_routes(app, explorer)
    add_export_routes(app, explorer)
    add_annotation_routes(app, explorer)
    return app


# -- errors: one line in the page (JSON {"error": ...}) and one in the log, never a traceback -----
def add_error_handlers(app: FastAPI) -> None:
    def answer(request: Request, status: int, message: str) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, message)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(UnknownItem)
    async def unknown(request: Request, error: UnknownItem):
        return answer(request, 404, str(error))

    @app.exception_handler(AstroVaDErError)
    async def refused(request: Request, error: AstroVaDErError):
        return answer(request, 400, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        message = f"not found: {request.url.path}" if error.status_code == 404 else str(error.detail)
        return answer(request, error.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        parts = [f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}" for problem in error.errors()]
        return answer(request, 422, "; ".join(parts))

    app.add_middleware(OneLineErrors)


class OneLineErrors:
    """Unexpected failures as a 500 with a one-line message (Starlette would log a traceback)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:  # noqa: BLE001 - the point: no request may print a traceback
            message = f"internal error: {type(error).__name__}: {error}"
            log.error("%s %s: %s", scope.get("method", ""), scope.get("path", ""), message)
            if not started and scope["type"] == "http":
                await JSONResponse({"error": message}, status_code=500)(scope, receive, send)


# -- the page ---------------------------------------------------------------------------------
def add_page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index():
        return static_file("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        return static_file(name)


def static_file(name: str) -> FileResponse:
    path = STATIC_FILES.get(name)  # by name from a fixed list: no request can name another file
    if path is None:
        raise UnknownItem(f"not found: /static/{name}")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})


def png_response(content: bytes) -> Response:
    return Response(content, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


# -- the catalogue ----------------------------------------------------------------------------
def add_catalogue_routes(app: FastAPI, explorer: Explorer) -> None:
    catalogue, annotations = explorer.catalogue, explorer.annotations

    @app.get("/api/summary")
    def summary():
        return {
            "run": catalogue.run.folder.name, "catalogue": catalogue.path.name, "rows": len(catalogue.ids),
            "readable": int(catalogue.readable.sum()), "components": catalogue.n_components,
            "columns": catalogue.columns, "flags": annotations.flag_names(), "samples_limit": SAMPLES_LIMIT,
            "silhouette_members": SILHOUETTE_MEMBERS, "annotations": f"{explorer.folder.name}/{annotations.path.name}",
        }

    @app.get("/api/components")
    def components():
        return [{**row, **annotations.component_entry(row["component"])} for row in catalogue.components_table()]

    @app.get("/api/members")
    def members(component: int, sort: str = "gamma", order: str = Query("desc", pattern="^(asc|desc)$"),
                page: int = Query(0, ge=0), per_page: int = Query(60, ge=1, le=PAGE_LIMIT),
                column: Optional[str] = None, value: Optional[str] = None, low: Optional[float] = None,
                high: Optional[float] = None, flag: Optional[str] = None):
        query = MemberQuery(component, sort, order == "desc", column or None, value, low, high)
        positions = catalogue.member_order(query)
        flags = annotations.flags()
        if flag:  # "any" or one flag: the annotations change, so this is never cached
            wanted = [i for i, f in flags.items() if flag == "any" or f == flag]
            positions = positions[catalogue.id_in(positions, wanted)]
        result = catalogue.page(positions, page, per_page)
        for row in result["rows"]:
            row["flag"] = flags.get(row["id_str"], "")
        return result

    @app.get("/api/object")
    def object_(id: str):
        return {**catalogue.object(id), "annotation": annotations.object_entry(id)}


# -- images and the latent map ----------------------------------------------------------------
def add_picture_routes(app: FastAPI, explorer: Explorer) -> None:
    catalogue = explorer.catalogue

    @app.get("/api/image")
    def image(id: str, kind: str = "input"):
        return png_response(explorer.images.png(id, kind))

    @app.get("/api/samples")
    def samples(component: int, seed: int = Query(0, ge=0), n: int = Query(16, ge=1, le=SAMPLES_LIMIT)):
        return png_response(explorer.images.samples_png(component, seed, n))

    @app.get("/api/map")
    def latent_map(color: Optional[str] = None):
        state = explorer.latent.state()
        if state["status"] == "failed":
            raise AstroVaDErError(state["message"])
        if state["status"] == "computing":
            return JSONResponse(state, status_code=202)
        positions = explorer.latent.table["position"].to_numpy()
        points = {"x": explorer.latent.table["x"].round(4).tolist(), "y": explorer.latent.table["y"].round(4).tolist(),
                  "component": catalogue.component[positions].tolist(), "id": catalogue.ids[positions].tolist()}
        if color:
            points["color"] = catalogue.map_colours(positions, color, MAP_CATEGORIES)
        return {**state, **points}


# -- export -------------------------------------------------------------------------------------
def add_export_routes(app: FastAPI, explorer: Explorer) -> None:
    catalogue = explorer.catalogue

    @app.post("/api/export")
    def export(format: str = "parquet"):
        path = export_catalogue(catalogue.frame, explorer.annotations, explorer.folder, format)
        log.info("exported %s", path)
        return {"file": f"{explorer.folder.name}/{path.name}", "rows": len(catalogue.ids), "bytes": path.stat().st_size,
                "download": f"/api/export/{format}"}

    @app.get("/api/export/{format}")
    def download(format: str):
        path = explorer.folder / export_name(format)  # a name from a fixed list, never from the request
        if not path.exists():
            raise UnknownItem(f"no {format} export yet: export it first")
        return FileResponse(path, filename=path.name, media_type="application/octet-stream")


# -- annotations --------------------------------------------------------------------------------
def add_annotation_routes(app: FastAPI, explorer: Explorer) -> None:
    catalogue, annotations = explorer.catalogue, explorer.annotations

    @app.put("/api/annotations/component")
    def name_component(body: ComponentAnnotation):
        catalogue.check_component(body.component)
        return {"component": body.component, **annotations.name_component(body.component, body.name, body.note)}

    @app.put("/api/annotations/object")
    def annotate_object(body: ObjectAnnotation):
        component = int(catalogue.component[catalogue.position(body.id_str)])
        entry = annotations.annotate_object(body.id_str, component, body.flag, body.note)
        return {"id_str": body.id_str, "component": component, **entry}
