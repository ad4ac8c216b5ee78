"""`astrovader explore` on a tiny run: the catalogue checks, the JSON API (pages, filters, images,
unknown ids, path traversal), annotations written atomically and kept across a kill -9, the
export read back, and the whole page driven in headless Chromium (skipped without it)."""

from __future__ import annotations

import dataclasses
import http.client
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from astrovader.analysis import clusters
from astrovader.atomic import read_json, write_json_atomic
from astrovader.errors import AstroVaDErError, InputError
from astrovader.explore import catalogue as catalogue_module
from astrovader.explore import create_app, open_explorer, serve
from astrovader.explore.annotations import Annotations
from astrovader.explore.catalogue import Catalogue
from astrovader.explore.latent import LatentMap
from astrovader.model.inference import decode
from astrovader.model.io import save_model
from astrovader.model.vade import VaDE
from astrovader.predict import predict_catalogue, read_predictions

from conftest import class_prior_model

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def base_run(blob_cache, tiny_config, tmp_path_factory):
    """A tiny run in seconds (as test_predict's `trained`: one prior component per blob class
    instead of training), its run.json pointing at the blob cache, and its predictions."""
    folder = save_model(tmp_path_factory.mktemp("explore") / "run", class_prior_model(blob_cache, tiny_config), tiny_config)
    write_json_atomic(folder / "run.json", {"data": {"kind": "cache", "cache": str(blob_cache)}, "status": "complete"})
    predict_catalogue(folder, blob_cache, folder / "predictions", batch_size=100, workers=0)
    return folder


@pytest.fixture
def run_dir(base_run, tmp_path):
    """A fresh copy of the run for each test that writes annotations."""
    return shutil.copytree(base_run, tmp_path / "run")


@pytest.fixture(scope="module")
def shared(base_run):
    """One explorer and client for the tests that only read."""
    explorer = open_explorer(base_run, map_method="pca")
    explorer.latent.wait()
    return explorer, TestClient(create_app(explorer))


def error_of(response, status):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "Traceback" not in message and "\n" not in message
    return message


# -- the catalogue ------------------------------------------------------------------------------
def test_components_table_agrees_with_the_analysis_and_the_model(shared):
    explorer, client = shared
    catalogue = explorer.catalogue
    rows = client.get("/api/components").json()
    frame = read_predictions(catalogue.path)
    gamma = frame[catalogue.gamma_columns].to_numpy()
    expected = clusters.component_table(frame[catalogue.mu_columns].to_numpy(), gamma)
    assert [row["size"] for row in rows] == expected["objects"].tolist() and sum(row["size"] for row in rows) == 600
    assert np.allclose([row["silhouette"] for row in rows], expected["silhouette"], atol=1e-9)
    weights = catalogue.model.prior.log_weights().exp().detach().numpy()
    assert np.allclose([row["weight"] for row in rows], weights)
    for row in rows:
        members = frame[frame["component"] == row["component"]]
        assert row["top"] == members.sort_values("gamma_max", ascending=False, kind="stable")["id_str"].head(8).tolist()
        assert row["name"] == "" and row["note"] == ""


def test_silhouettes_of_large_components_come_from_a_sample_of_their_members(base_run, monkeypatch):
    exact = Catalogue(base_run).silhouettes
    monkeypatch.setattr(catalogue_module, "SILHOUETTE_MEMBERS", 100)
    sampled = Catalogue(base_run).silhouettes
    assert not np.array_equal(sampled, exact) and np.allclose(sampled, exact, atol=0.05)


def test_members_come_in_pages_sorted_and_filtered(shared):
    explorer, client = shared
    frame = explorer.catalogue.frame
    members = frame[frame["component"] == 1]
    seen = []
    for page in range(3):
        result = client.get("/api/members", params={"component": 1, "sort": "mse", "order": "asc", "page": page, "per_page": 80}).json()
        assert result["total"] == len(members) and result["pages"] == -(-len(members) // 80)
        seen += result["rows"]
        if page + 1 == result["pages"]:
            break
    assert [row["id_str"] for row in seen] == members.sort_values("mse", kind="stable")["id_str"].tolist()
    assert len({len(r) for r in seen}) == 1 and set(seen[0]) == {"id_str", "gamma", "mse", "log_likelihood", "flag"}

    by_label = client.get("/api/members", params={"component": 1, "column": "label_name", "value": "along_x", "per_page": 200}).json()
    expected = members[members["label_name"] == "along_x"]
    assert by_label["total"] == len(expected) and {r["id_str"] for r in by_label["rows"]} == set(expected["id_str"])
    ranged = client.get("/api/members", params={"component": 1, "column": "mse", "low": 0, "high": float(members["mse"].median())}).json()
    assert ranged["total"] == int((members["mse"] <= members["mse"].median()).sum())


def test_paging_limits_and_bad_queries_are_clear_messages(shared):
    _, client = shared
    assert "per_page" in error_of(client.get("/api/members", params={"component": 0, "per_page": 201}), 422)
    assert "page 99" in error_of(client.get("/api/members", params={"component": 0, "page": 99}), 400)
    assert "component 7" in error_of(client.get("/api/members", params={"component": 7}), 404)
    assert "sort 'size'" in error_of(client.get("/api/members", params={"component": 0, "sort": "size"}), 400)
    assert "column 'nope'" in error_of(client.get("/api/members", params={"component": 0, "column": "nope", "value": "1"}), 404)
    assert "not numeric" in error_of(client.get("/api/members", params={"component": 0, "column": "label_name", "low": 1}), 400)
    assert "n" in error_of(client.get("/api/samples", params={"component": 0, "n": 65}), 422)


def test_unknown_ids_are_404_with_a_message_and_one_log_line(shared, caplog):
    _, client = shared
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        for path in ("/api/object", "/api/image"):
            assert error_of(client.get(path, params={"id": "nope"}), 404) == "id 'nope': not in the catalogue predictions"
        assert "not found: /api/nothing" == error_of(client.get("/api/nothing"), 404)
    assert len(caplog.records) == 3 and all("nope" in r.getMessage() or "nothing" in r.getMessage() for r in caplog.records)
    assert not any(record.exc_info for record in caplog.records)


def test_an_unexpected_failure_is_a_500_with_one_line_and_no_traceback(shared, monkeypatch, caplog):
    explorer, client = shared
    monkeypatch.setattr(explorer.catalogue, "object", lambda id_str: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        message = error_of(client.get("/api/object", params={"id": "g0001"}), 500)
    assert message == "internal error: ZeroDivisionError: division by zero"
    assert [r.getMessage() for r in caplog.records] == [f"GET /api/object: {message}"] and not caplog.records[0].exc_info


def test_images_are_the_cache_pixels_and_the_decoded_mu(shared):
    explorer, client = shared
    catalogue = explorer.catalogue
    position = catalogue.position("g0005")
    response = client.get("/api/image", params={"id": "g0005"})
    assert response.headers["content-type"] == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(response.content)))
    assert np.array_equal(shown, catalogue.cache.images[catalogue.cache_rows[position]][0])
    reconstruction = np.asarray(Image.open(io.BytesIO(client.get("/api/image", params={"id": "g0005", "kind": "reconstruction"}).content)))
    expected = np.round(decode(catalogue.model, catalogue.mu[position : position + 1].copy())[0, 0] * 255)
    assert np.array_equal(reconstruction, expected.astype(np.uint8))
    assert "kind 'mask'" in error_of(client.get("/api/image", params={"id": "g0005", "kind": "mask"}), 404)


def test_synthetic_samples_are_the_estimators_for_that_component_and_seed(shared, base_run):
    from astrovader import AstroVaDEr

    _, client = shared
    first, again = (client.get("/api/samples", params={"component": 2, "seed": 3, "n": 16}).content for _ in range(2))
    shown = np.asarray(Image.open(io.BytesIO(first)))
    assert shown.shape == (2 * 16 + 1, 8 * 16 + 7) and first == again  # two rows of eight 16 px images, 1 px gaps
    images, components = AstroVaDEr.load(base_run).sample(16, component=2, seed=3)
    assert (components == 2).all()
    cells = [shown[row * 17 : row * 17 + 16, column * 17 : column * 17 + 16] for row in range(2) for column in range(8)]
    assert all(np.array_equal(cell, np.round(image[0] * 255)) for cell, image in zip(cells, images))
    assert (shown[16] == 0).all() and (shown[:, 16::17] == 0).all()  # black gaps


def test_latent_map_is_served_coloured_and_kept_for_the_next_start(shared, base_run, tmp_path):
    explorer, client = shared
    answer = client.get("/api/map").json()
    assert answer["status"] == "ready" and answer["method"] == "PCA" and answer["points"] == 600
    assert set(answer["id"]) == set(explorer.catalogue.ids) and len(answer["x"]) == 600
    positions = [explorer.catalogue.position(i) for i in answer["id"]]
    assert answer["component"] == explorer.catalogue.component[positions].tolist()
    labels = client.get("/api/map", params={"color": "label_name"}).json()["color"]
    assert labels["kind"] == "category" and sorted(labels["categories"]) == ["along_x", "along_y", "round"]
    names = np.array(labels["categories"])[labels["codes"]]
    assert names.tolist() == explorer.catalogue.frame["label_name"].iloc[positions].tolist()
    assert client.get("/api/map", params={"color": "mse"}).json()["color"]["kind"] == "number"
    kept = LatentMap(explorer.catalogue, base_run / "explore", "pca")
    kept.start()  # the kept map matches: nothing to compute
    assert kept._thread is None and kept.table["x"].tolist() == explorer.latent.table["x"].tolist()
    shutil.copy(base_run / "explore" / "latent_map.json", tmp_path)
    reseeded = LatentMap(explorer.catalogue, tmp_path, "pca", seed=1)
    reseeded.start()  # another key: made again
    reseeded.wait()
    assert reseeded._thread is not None and read_json(tmp_path / "latent_map.json")["seed"] == 1


def test_tsne_map_of_a_small_subsample(base_run, tmp_path):
    latent = LatentMap(Catalogue(base_run), tmp_path, "tsne", max_points=60)
    latent.start()
    latent.wait(120)
    assert latent.state()["status"] == "ready" and latent.label == "t-SNE" and len(latent.table) == 60
    assert (tmp_path / "latent_map.json").exists()


# -- bad input ----------------------------------------------------------------------------------
def test_a_catalogue_that_does_not_match_the_run_is_a_one_line_error(base_run, tmp_path):
    frame = read_predictions(base_run / "predictions")
    frame.drop(columns=["gamma_02"]).to_parquet(tmp_path / "two.parquet")
    with pytest.raises(InputError, match=r"2 gamma and 4 mu columns, but the model .* K = 3"):
        Catalogue(base_run, tmp_path / "two.parquet")
    frame.assign(id_str="x" + frame["id_str"]).to_parquet(tmp_path / "others.parquet")
    with pytest.raises(InputError, match=r"600 of 600 ids are not in the cache .* \(e.g. 'xg0000'\)"):
        Catalogue(base_run, tmp_path / "others.parquet")
    with pytest.raises(InputError, match="no such run folder"):
        Catalogue(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no trained model"):
        Catalogue(tmp_path / "empty")


def test_the_catalogue_of_another_model_with_the_same_k_and_j_is_refused(base_run, blob_cache, tiny_config, tmp_path):
    torch.manual_seed(1)
    other = save_model(tmp_path / "other", VaDE(tiny_config).eval(), tiny_config)
    predict_catalogue(other, blob_cache, tmp_path / "other-predictions", batch_size=100, workers=0)
    with pytest.raises(InputError, match=r"not what the model of .* gives for the same images; .* another model"):
        Catalogue(base_run, tmp_path / "other-predictions")


def test_a_failed_latent_map_is_one_line_in_the_page_and_the_log(shared, tmp_path, monkeypatch, caplog):
    from astrovader.explore import latent as latent_module

    explorer, _ = shared
    monkeypatch.setattr(latent_module, "project", lambda mu, method, seed: np.linalg.inv(np.zeros((2, 2))))
    failing = LatentMap(explorer.catalogue, tmp_path, "pca")
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        failing.start()
        failing.wait()
        client = TestClient(create_app(dataclasses.replace(explorer, latent=failing)))
        message = error_of(client.get("/api/map"), 400)
    assert message == "latent map: LinAlgError: Singular matrix" and not list(tmp_path.iterdir())
    assert [r.getMessage() for r in caplog.records] == [message, f"GET /api/map: {message}"]


def test_a_run_without_predictions_says_how_to_make_them(run_dir):
    shutil.rmtree(run_dir / "predictions")
    with pytest.raises(InputError, match=r"no cluster catalogue; run `astrovader predict .* --out .*predictions` first"):
        Catalogue(run_dir)


def test_cli_prints_one_line_for_a_bad_start(run_dir):
    shutil.rmtree(run_dir / "predictions")
    started = subprocess.run([sys.executable, "-m", "astrovader", "explore", str(run_dir), "--port", str(free_port())],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = (started.stdout + started.stderr).strip()
    assert started.returncode == 2 and output.startswith("error:") and "astrovader predict" in output
    assert "Traceback" not in output and len(output.splitlines()) <= 2  # rich may wrap a long line once


# -- annotations and export ---------------------------------------------------------------------
def test_annotations_are_written_at_once_and_read_back(run_dir):
    client = TestClient(create_app(open_explorer(run_dir, map_method="pca")))
    assert client.put("/api/annotations/component", json={"component": 1, "name": " long x ", "note": "elongated"}).json()["name"] == "long x"
    flagged = client.put("/api/annotations/object", json={"id_str": "g0004", "flag": "merger", "note": "two cores, see ()"}).json()
    assert flagged["component"] == int(read_predictions(run_dir / "predictions").set_index("id_str").loc["g0004", "component"])
    client.put("/api/annotations/object", json={"id_str": "g0007", "flag": "artefact", "note": ""})
    client.put("/api/annotations/object", json={"id_str": "g0007", "flag": "", "note": ""})  # cleared: the row goes
    saved = pd.read_csv(run_dir / "explore" / "annotations.csv", dtype=str, keep_default_na=False)
    assert list(saved.columns) == ["id_str", "component", "name", "flag", "note", "time"]
    assert saved[["id_str", "component", "name", "flag", "note"]].values.tolist() == [
        ["", "1", "long x", "", "elongated"], ["g0004", str(flagged["component"]), "", "merger", "two cores, see ()"]]
    assert not list((run_dir / "explore").glob(".annotations.csv.*"))  # no temporary file left behind
    reloaded = Annotations(run_dir / "explore" / "annotations.csv", 3)
    assert reloaded.names() == {1: "long x"} and reloaded.flags() == {"g0004": "merger"}
    assert "id 'nope'" in error_of(client.put("/api/annotations/object", json={"id_str": "nope", "flag": "merger"}), 404)
    assert "component 5" in error_of(client.put("/api/annotations/component", json={"component": 5, "name": "x"}), 404)
    assert "name" in error_of(client.put("/api/annotations/component", json={"component": 0, "name": "x" * 81}), 422)


def test_a_damaged_annotations_file_is_a_one_line_error(run_dir):
    (run_dir / "explore").mkdir(exist_ok=True)
    (run_dir / "explore" / "annotations.csv").write_text("id_str,component,name,flag,note,time\n,9,big,,,\n")
    with pytest.raises(InputError, match=r"annotations.csv line 2: component '9', but the model has components 0..2"):
        open_explorer(run_dir, map_method="pca")
    (run_dir / "explore" / "annotations.csv").write_text("id,flag\n")
    with pytest.raises(InputError, match="no id_str, component, name, note, time column"):
        open_explorer(run_dir, map_method="pca")


def test_export_joins_names_and_flags_in_every_format(run_dir):
    client = TestClient(create_app(open_explorer(run_dir, map_method="pca")))
    client.put("/api/annotations/component", json={"component": 2, "name": "along y"})
    client.put("/api/annotations/object", json={"id_str": "g0002", "flag": "wrong component", "note": "looks round"})
    catalogue = read_predictions(run_dir / "predictions")
    assert "no csv export yet" in error_of(client.get("/api/export/csv"), 404)
    for output_format in ("parquet", "csv", "fits"):
        answer = client.post("/api/export", params={"format": output_format}).json()
        path = run_dir / "explore" / f"catalogue-annotated.{output_format}"
        assert answer == {"file": f"explore/{path.name}", "rows": 600, "bytes": path.stat().st_size,
                          "download": f"/api/export/{output_format}"}
        assert client.get(answer["download"]).content == path.read_bytes()
        exported = read_predictions(path)  # astropy underneath for FITS
        assert exported["id_str"].tolist() == catalogue["id_str"].tolist()
        assert list(exported.columns) == [*catalogue.columns, "component_name", "flag", "note"]
        names = np.where(catalogue["component"] == 2, "along y", "")
        assert exported["component_name"].fillna("").tolist() == names.tolist()
        flags = exported.set_index("id_str")["flag"].fillna("")
        assert flags["g0002"] == "wrong component" and (flags.drop("g0002") == "").all()
    assert "format 'xlsx'" in error_of(client.post("/api/export", params={"format": "xlsx"}), 400)
    assert "format 'xlsx'" in error_of(client.get("/api/export/xlsx"), 400)


def test_annotations_survive_kill_9_of_the_server(run_dir):
    port = free_port()
    server = start_cli_server(run_dir, port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.put(f"{base}/api/annotations/component", json={"component": 0, "name": "round"}).status_code == 200
        assert httpx.put(f"{base}/api/annotations/object", json={"id_str": "g0009", "flag": "artefact"}).status_code == 200
        assert httpx.get(f"{base}/api/object", params={"id": "nope"}).status_code == 404
    finally:
        server.send_signal(signal.SIGKILL)
        log = server.communicate(timeout=30)[0]
    assert "id 'nope': not in the catalogue" in log and "Traceback" not in log
    reloaded = open_explorer(run_dir, map_method="pca").annotations
    assert reloaded.names() == {0: "round"} and reloaded.flags() == {"g0009": "artefact"}


def test_a_network_wide_start_warns_and_a_busy_port_is_refused(base_run, monkeypatch):
    started, said = {}, []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(options))
    serve(base_run, host="0.0.0.0", port=free_port(), map_method="pca", say=said.append)
    assert started["host"] == "0.0.0.0" and any(line.startswith("warning: listening on 0.0.0.0: anyone") for line in said)
    said.clear()
    serve(base_run, port=free_port(), map_method="pca", say=said.append)
    assert started["host"] == "127.0.0.1" and not any("warning" in line for line in said)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(AstroVaDErError, match=r"cannot listen on 127.0.0.1:\d+"):
            serve(base_run, port=busy.getsockname()[1], say=said.append)


# -- security -----------------------------------------------------------------------------------
TRAVERSALS = (
    "/static/../../../../../../etc/passwd", "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/../../../../etc/passwd", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/..%5c..%5cetc%5cpasswd",
    "/static/%2e%2e%2fmodel.json", "/static/..%2f..%2f..%2frun.json", "/api/image?id=../../../../etc/passwd",
    "/api/export/..%2f..%2f..%2fetc%2fpasswd", "/api/export/%2e%2e%2fmodel.json", "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
)


def test_no_file_outside_the_package_can_be_read(shared):
    explorer, _ = shared
    with LiveServer(create_app(explorer, trusted_hosts=["127.0.0.1", "localhost"])) as port:
        for path in TRAVERSALS:
            status, body = raw_get(port, path)
            assert status in (400, 404), (path, status)
            assert b"root:" not in body and b"safetensors" not in body and b'"config"' not in body, path
        assert raw_get(port, "/static/explore.js")[0] == 200 and raw_get(port, "/")[0] == 200
        assert raw_get(port, "/", host="evil.example")[0] == 400  # DNS rebinding: refused


# -- the page in headless Chromium ---------------------------------------------------------------
@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("headless browser test: needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path below, selenium-manager never runs
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1360,960"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_page_explores_annotates_keeps_and_exports(run_dir, browser, tmp_path):
    from explore_page import ExplorerPage

    with LiveServer(create_app(open_explorer(run_dir, map_method="pca"))) as port:
        page = ExplorerPage(browser, f"http://127.0.0.1:{port}", tmp_path)
        page.check_components(read_predictions(run_dir / "predictions"))
        page.check_members_sorted_by_mse(read_predictions(run_dir / "predictions"), component=1)
        page.check_map_click()
        page.check_samples(component=2)
        page.name_component(0, "round blobs")
        page.flag_object("g0003", "merger", note="double nucleus")
        page.check_unknown_id("nope")
    with LiveServer(create_app(open_explorer(run_dir, map_method="pca"))) as port:  # a restart: all from disk
        page.base = f"http://127.0.0.1:{port}"
        page.check_kept(0, "round blobs", "g0003", "merger", "double nucleus")
        for output_format in ("parquet", "csv"):
            exported = read_predictions(page.export(output_format, run_dir / "explore" / f"catalogue-annotated.{output_format}"))
            assert exported.set_index("id_str").loc["g0003", ["flag", "note"]].tolist() == ["merger", "double nucleus"]
            assert set(exported.loc[exported["component"] == 0, "component_name"]) == {"round blobs"}
            assert set(exported.loc[exported["component"] != 0, "component_name"].fillna("")) == {""}
    saved = pd.read_csv(run_dir / "explore" / "annotations.csv", dtype=str, keep_default_na=False)
    assert saved[["id_str", "name", "flag", "note"]].values.tolist() == [["", "round blobs", "", ""], ["g0003", "", "merger", "double nucleus"]]
    page.check_no_script_errors()
    assert sorted(path.name for path in tmp_path.glob("explorer-*.png")) == [
        f"explorer-{view}.png" for view in ("components", "map", "members", "object", "samples")]


# -- helpers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """The app served by uvicorn in a thread on a free loopback port (no logging set up)."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "the test server did not start"
        return self.server.config.port

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)


def raw_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """GET with the path sent exactly as given (http clients would normalise the dots)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", f"{host}:{port}")
    connection.endheaders()
    response = connection.getresponse()
    status, body = response.status, response.read()
    connection.close()
    return status, body


def start_cli_server(run_dir, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "astrovader", "explore", str(run_dir), "--port", str(port), "--map", "pca"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/summary", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            if server.poll() is not None:
                raise AssertionError(f"the server stopped: {server.communicate()[0]}") from None
            time.sleep(0.25)
    server.kill()
    raise AssertionError("the server did not answer within 120 s")
