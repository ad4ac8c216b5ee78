"""Cutout downloads against a local HTTP server that misbehaves on purpose (no internet)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from PIL import Image
from typer.testing import CliRunner

from astrovader.config import Config
from astrovader.data.sources.cutouts import download_cutouts
from astrovader.data.sources.fetch import check_cutout
from astrovader.data.sources.surveys import CutoutOptions
from astrovader.errors import AstroVaDErError

SIZE = 32
SLOW_SECONDS = 2.0  # far beyond the tests' timeout
FLAKY_FAILURES = 2  # a "flaky" position answers 500 this many times, then the cutout


def cutout_payload(ra: float, dec: float, size: int, image_format: str) -> bytes:
    """What the fake service serves for a position: deterministic, different per position."""
    ramp = np.linspace(0, 255, size * size).reshape(size, size)
    bands = np.stack([ramp, np.full_like(ramp, ra % 256), np.full_like(ramp, (dec + 90) % 256)])
    buffer = io.BytesIO()
    if image_format == "fits":
        fits.PrimaryHDU(bands.astype(np.float32)).writeto(buffer)
    else:
        Image.fromarray(np.moveaxis(bands, 0, -1).astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class FakeSurvey(ThreadingHTTPServer):
    """Serves SDSS-, Legacy- and hips2fits-style cutout requests; misbehaves per position (ra)."""

    daemon_threads = True
    block_on_close = False  # slow answers must not hold up the test's teardown

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviours: dict[float, str] = {}
        self.requests: Counter[float] = Counter()
        self.log: list[tuple[float, str, dict[str, str]]] = []  # (time, path, params)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        pass  # clients that gave up (timeouts, kills) are part of the tests


class _Handler(BaseHTTPRequestHandler):
    server: FakeSurvey

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        params = {key: values[0] for key, values in parse_qs(parts.query).items()}
        ra, dec = float(params["ra"]), float(params["dec"])
        server = self.server
        with server.lock:
            server.requests[ra] += 1
            server.log.append((time.monotonic(), parts.path, params))
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            count = server.requests[ra]
        try:
            self._answer(server.behaviours.get(ra, "ok"), count, parts.path, params, ra, dec)
        finally:
            with server.lock:
                server.in_flight -= 1

    def _answer(self, behaviour, count, path, params, ra, dec):
        size = int(params.get("width") or params["size"])
        image_format = "fits" if path.endswith(".fits") or params.get("format") == "fits" else "jpg"
        payload = cutout_payload(ra, dec, size, image_format)
        if behaviour == "slow":
            time.sleep(SLOW_SECONDS)
        elif behaviour == "broken" or (behaviour == "flaky" and count <= FLAKY_FAILURES):
            return self._send(500, b"server error")
        elif behaviour == "missing":
            return self._send(404, b"no such cutout")
        elif behaviour == "truncated":
            payload = payload[: len(payload) // 2]
        elif behaviour == "wrong_size":
            payload = cutout_payload(ra, dec, size - 1, image_format)
        elif behaviour == "cut":  # the connection drops mid-body: transient, so retried
            self._send_headers(200, len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            return None
        elif behaviour == "trickle":  # half the body, a pause, the rest: a kill lands mid-transfer
            self._send_headers(200, len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            time.sleep(0.3)
            self.wfile.write(payload[len(payload) // 2 :])
            return None
        return self._send(200, payload)

    def _send(self, status, body):
        self._send_headers(status, len(body))
        self.wfile.write(body)

    def _send_headers(self, status, length):
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.end_headers()


@pytest.fixture
def survey():
    server = FakeSurvey()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def write_catalogue(path: Path, rows: int, first_ra: float = 10.0, **extra_columns) -> Path:
    """A Galaxy-Zoo-like table: one galaxy per whole degree of ra, so ra keys the behaviour."""
    table = pd.DataFrame(
        {
            "id_str": [f"gal{index}" for index in range(rows)],
            "ra": first_ra + np.arange(rows, dtype=float),
            "dec": np.linspace(-20, 40, rows),
            "petroR90_r": 10.0 + np.arange(rows),
            "t01_total_votes": 30 + 2 * np.arange(rows),
            **extra_columns,
        }
    )
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    elif path.suffix == ".fits":
        from astropy.table import Table

        Table.from_pandas(table).write(path)
    else:
        table.to_csv(path, index=False)
    return path


def options_for(server: FakeSurvey, **changes) -> CutoutOptions:
    """Fast, test-sized settings against the fake service."""
    values = dict(
        survey="sdss", size=SIZE, scale_column="petroR90_r", base_url=server.url,
        concurrency=4, rate=200.0, retries=2, timeout=0.3, backoff=0.01,
    )
    values.update(changes)
    return CutoutOptions(**values)


def cutout_files(out: Path) -> list[Path]:
    return sorted(path for path in (out / "images").iterdir() if not path.name.startswith("."))


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"survey": "hubble"}, "survey = 'hubble'"),
        ({"survey": "hips:"}, "survey = 'hips:'"),
        ({"survey": "sdss:dr9"}, "survey = 'sdss:dr9'"),
        ({"scale_column": None}, "scale_column = None, pixscale = None"),
        ({"pixscale": 0.4}, "scale_column = 'petroR90_r', pixscale = 0.4"),
        ({"size": 0}, "size = 0"),
        ({"scale_factor": -0.02}, "scale_factor = -0.02"),
        ({"scale_column": None, "pixscale": 0.0}, "pixscale = 0.0"),
        ({"concurrency": 0}, "concurrency = 0"),
        ({"rate": 0.0}, "rate = 0.0"),
        ({"rate": float("nan")}, "rate = nan"),
        ({"retries": -1}, "retries = -1"),
        ({"timeout": 0.0}, "timeout = 0.0"),
        ({"image_format": "fits"}, "the SDSS cutout service only serves JPEG"),
        ({"image_format": "png", "survey": "legacy"}, "image_format = 'png'"),
        ({"base_url": "ftp://example.org"}, "base_url = 'ftp://example.org'"),
    ],
)
def test_bad_options_raise_one_line_naming_the_option_and_value(changes, named):
    values = dict(survey="sdss", scale_column="petroR90_r") | changes
    with pytest.raises(AstroVaDErError, match="^cutouts: ") as raised:
        CutoutOptions(**values)
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_urls_follow_each_service_and_scale_with_the_galaxy():
    sdss = CutoutOptions(scale_column="petroR90_r").url(150.5, 2.25, 0.02 * 12.0)
    assert sdss.startswith("https://skyserver.sdss.org/dr17/SkyServerWS/ImgCutout/getjpeg?")
    assert "ra=150.5&dec=2.25&scale=0.24&width=256&height=256" in sdss

    legacy = CutoutOptions(survey="legacy", pixscale=0.262, image_format="fits", size=128).url(150.5, 2.25, 0.262)
    assert legacy == (
        "https://www.legacysurvey.org/viewer/cutout.fits?ra=150.5&dec=2.25&layer=ls-dr10&pixscale=0.262&size=128"
    )
    assert "layer=ls-dr9" in CutoutOptions(survey="legacy:ls-dr9", pixscale=0.262).url(1.0, 2.0, 0.262)

    hips = CutoutOptions(survey="hips:CDS/P/SDSS9/color", pixscale=0.36, size=100).url(150.5, 2.25, 0.36)
    assert hips.startswith("https://alasky.cds.unistra.fr/hips-image-services/hips2fits?hips=CDS%2FP%2FSDSS9%2Fcolor")
    assert "width=100&height=100&projection=TAN&fov=0.01&ra=150.5&dec=2.25&format=jpg" in hips


# -- downloads --------------------------------------------------------------------------------


def test_each_outcome_is_downloaded_retried_or_reported_with_its_reason(survey, tmp_path):
    catalogue = write_catalogue(tmp_path / "gz2.csv", 10)
    # rows 0, 1 and 9 fine; rows 2-8 misbehave (flaky = 500, 500, then the cutout)
    survey.behaviours.update({
        12.0: "flaky", 13.0: "broken", 14.0: "missing", 15.0: "slow", 16.0: "truncated", 17.0: "wrong_size",
        18.0: "cut",
    })
    table = pd.read_csv(catalogue).astype({"ra": object})
    table.loc[10] = ["gal10", "not a number", 0.0, 10.0, 1]  # rows 10-14 are never requested
    table.loc[11] = ["gal11", 30.0, 95.0, 10.0, 1]
    table.loc[12] = ["gal12", 31.0, 0.0, -1.0, 1]
    table.loc[13] = ["gal0", 32.0, 0.0, 10.0, 1]
    table.loc[14] = ["", 33.0, 0.0, 10.0, 1]
    table.to_csv(catalogue, index=False)
    calls = []

    summary = download_cutouts(catalogue, tmp_path / "out", options_for(survey), progress=lambda *c: calls.append(c))

    assert (summary.requested, summary.downloaded, summary.skipped, summary.failed) == (15, 4, 0, 11)
    assert "15 requested = 4 downloaded + 0 already present + 11 failed" in summary.line()
    out = tmp_path / "out"
    assert [path.name for path in cutout_files(out)] == ["gal0.jpg", "gal1.jpg", "gal2.jpg", "gal9.jpg"]
    for path in cutout_files(out):
        row = table[table["id_str"] == path.stem].iloc[0]
        assert path.read_bytes() == cutout_payload(float(row["ra"]), float(row["dec"]), SIZE, "jpg")

    reasons = pd.read_csv(out / "failures.csv", keep_default_na=False).set_index("row")["reason"]
    expected = {
        3: "HTTP 500.*gave up after 3 attempts", 4: "^HTTP 404", 5: "ReadTimeout.*gave up after 3 attempts",
        6: "corrupt or truncated image", 7: r"expected 32 x 32 px", 8: "RemoteProtocolError.*gave up after 3",
        10: "ra = 'not a number'", 11: r"dec = 95.0: not a number in \[-90, 90\]", 12: "petroR90_r = -1.0",
        13: "duplicate id", 14: "empty id",
    }
    assert sorted(reasons.index) == sorted(expected)
    for row, pattern in expected.items():
        assert re.search(pattern, reasons[row]), (row, reasons[row])

    # Transient problems are retried up to `retries`, 4xx and bad payloads never.
    assert survey.requests == {
        10.0: 1, 11.0: 1, 12.0: 3, 13.0: 3, 14.0: 1, 15.0: 3, 16.0: 1, 17.0: 1, 18.0: 3, 19.0: 1
    }
    assert survey.max_in_flight <= 4
    done = [done for done, _ in calls]
    assert calls[0] == (5, 15) and calls[-1] == (15, 15) and done == sorted(done)

    scales = {float(params["ra"]): float(params["scale"]) for _, _, params in survey.log}
    assert scales[10.0] == pytest.approx(0.02 * 10.0) and scales[19.0] == pytest.approx(0.02 * 19.0)
    written = pd.read_csv(out / "catalog.csv", dtype={"id_str": str})
    assert list(written.columns) == [
        "id_str", "file_loc", "ra", "dec", "pixscale", "url", "petroR90_r", "t01_total_votes"
    ]
    assert written["file_loc"].tolist() == ["images/gal0.jpg", "images/gal1.jpg", "images/gal2.jpg", "images/gal9.jpg"]
    assert written["url"][0].startswith(f"{survey.url}/getjpeg?ra=10.0&dec=-20.0&scale=0.2")
    assert not list((out / "images").glob(".*"))  # no temporary file left behind


def test_a_resumed_run_fetches_only_what_is_missing_or_invalid(survey, tmp_path):
    catalogue = write_catalogue(tmp_path / "gz2.csv", 6)
    survey.behaviours.update({12.0: "missing", 13.0: "broken"})
    out = tmp_path / "out"
    first = download_cutouts(catalogue, out, options_for(survey, retries=0))
    assert (first.downloaded, first.failed) == (4, 2)

    survey.behaviours.clear()
    (out / "images" / "gal5.jpg").write_bytes(b"not a jpeg")  # e.g. damaged by hand: fetched again
    before = Counter(survey.requests)
    second = download_cutouts(catalogue, out, options_for(survey))

    assert (second.requested, second.downloaded, second.skipped, second.failed) == (6, 3, 3, 0)
    assert survey.requests - before == {12.0: 1, 13.0: 1, 15.0: 1}
    assert pd.read_csv(out / "failures.csv").empty
    assert len(pd.read_csv(out / "catalog.csv")) == 6
    third = download_cutouts(catalogue, out, options_for(survey))
    assert (third.skipped, third.requests) == (6, 0)


def test_an_interrupted_run_stops_promptly_without_waiting_for_back_offs(survey, tmp_path):
    catalogue = write_catalogue(tmp_path / "gz2.csv", 6)
    survey.behaviours.update({11.0 + row: "broken" for row in range(5)})

    def interrupt(done, total):
        if done:
            raise KeyboardInterrupt  # as a Ctrl-C while the main thread reports progress

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        download_cutouts(catalogue, tmp_path / "out", options_for(survey, backoff=30.0), progress=interrupt)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "out" / "catalog.csv").exists()


_DOWNLOAD_SCRIPT = """
import json, sys
from astrovader.data.sources.cutouts import download_cutouts
from astrovader.data.sources.surveys import CutoutOptions
arguments = json.loads(sys.argv[1])
download_cutouts(arguments["catalogue"], arguments["out"], CutoutOptions(**arguments["options"]))
"""


def test_a_killed_download_leaves_no_partial_cutout_and_a_rerun_completes(survey, tmp_path):
    rows = 16
    catalogue = write_catalogue(tmp_path / "gz2.csv", rows)
    survey.behaviours.update({10.0 + row: "trickle" for row in range(rows)})
    out = tmp_path / "out"
    options = dict(survey="sdss", size=SIZE, scale_column="petroR90_r", base_url=survey.url, concurrency=2, rate=50.0)
    arguments = json.dumps({"catalogue": str(catalogue), "out": str(out), "options": options})
    process = subprocess.Popen([sys.executable, "-c", _DOWNLOAD_SCRIPT, arguments])
    try:
        deadline = time.monotonic() + 60  # generous: a busy CI machine imports slowly
        while not ((out / "images").is_dir() and len(cutout_files(out)) >= 3) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        process.kill()  # SIGKILL: no clean-up code runs
        process.wait()
    present = cutout_files(out)
    assert 3 <= len(present) < rows and not (out / "catalog.csv").exists()
    for path in present:  # every file that looks like a cutout is a whole, valid one
        check_cutout(path.read_bytes(), "jpg", SIZE)

    survey.behaviours.clear()
    before = Counter(survey.requests)
    summary = download_cutouts(catalogue, out, options_for(survey))
    assert (summary.downloaded + summary.skipped, summary.failed) == (rows, 0)
    fetched_again = survey.requests - before
    assert not {10.0 + int(path.stem.removeprefix("gal")) for path in present} & set(fetched_again)
    assert len(cutout_files(out)) == rows and not list((out / "images").glob(".*"))


def test_the_rate_limit_holds_on_the_server_side(survey, tmp_path):
    rate, rows = 10.0, 16
    catalogue = write_catalogue(tmp_path / "gz2.csv", rows)
    download_cutouts(catalogue, tmp_path / "out", options_for(survey, rate=rate, concurrency=4))
    times = np.array(sorted(at for at, _, _ in survey.log))
    assert len(times) == rows
    assert (times[-1] - times[0]) >= 0.9 * (rows - 1) / rate
    per_second = max(np.searchsorted(times, start + 1.0) - index for index, start in enumerate(times))
    assert per_second <= rate + 2  # +2: scheduling jitter on a busy machine


@pytest.mark.parametrize("table_suffix", [".parquet", ".fits"])
def test_legacy_fits_and_hips_cutouts_from_parquet_and_fits_tables(survey, tmp_path, table_suffix):
    catalogue = write_catalogue(tmp_path / f"galaxies{table_suffix}", 3)

    legacy_options = options_for(survey, survey="legacy", image_format="fits", scale_column=None, pixscale=0.262)
    hips_options = options_for(survey, survey="hips:CDS/P/SDSS9/color", scale_column=None, pixscale=0.4)
    legacy = download_cutouts(catalogue, tmp_path / "legacy", legacy_options)
    hips = download_cutouts(catalogue, tmp_path / "hips", hips_options)

    assert legacy.downloaded == hips.downloaded == 3
    with fits.open(tmp_path / "legacy" / "images" / "gal1.fits") as hdus:
        expected = fits.open(io.BytesIO(cutout_payload(11.0, 10.0, SIZE, "fits")))[0].data
        np.testing.assert_array_equal(hdus[0].data, expected)
    assert (tmp_path / "hips" / "images" / "gal2.jpg").read_bytes() == cutout_payload(12.0, 40.0, SIZE, "jpg")
    paths = {path for _, path, _ in survey.log}
    assert paths == {"/cutout.fits", "/hips2fits"}
    hips_params = [params for _, path, params in survey.log if path == "/hips2fits"][0]
    assert hips_params["hips"] == "CDS/P/SDSS9/color" and float(hips_params["fov"]) == pytest.approx(SIZE * 0.4 / 3600)
    legacy_params = [params for _, path, params in survey.log if path == "/cutout.fits"][0]
    assert (legacy_params["layer"], legacy_params["pixscale"], legacy_params["size"]) == ("ls-dr10", "0.262", str(SIZE))


def test_the_written_catalogue_feeds_prepare(survey, tmp_path):
    from astrovader.data.cache import Cache, prepare

    catalogue = write_catalogue(tmp_path / "gz2.csv", 8)
    survey.behaviours[12.0] = "missing"
    download_cutouts(catalogue, tmp_path / "out", options_for(survey))

    config = Config.from_preset("tiny").data.model_copy(update={"workers": 1, "where": "t01_total_votes > 30"})
    summary = prepare(tmp_path / "out" / "catalog.csv", tmp_path / "cache", config)

    assert (summary.inputs, summary.accepted, summary.rejected) == (6, 6, 0)  # gal0 (30 votes) and gal2 (404) out
    cache = Cache(tmp_path / "cache")
    index = cache.index
    assert "gal2" not in set(index["id_str"]) and index["file_loc"].str.endswith(".jpg").all()
    # The cache records the inputs' geometry: what a model trained on it will ask new cutouts to match.
    pixscale = float(pd.read_csv(tmp_path / "out" / "catalog.csv").query("id_str in @index.id_str")["pixscale"].median())
    assert cache.geometry == {"side_px": SIZE, "pixscale_arcsec": pytest.approx(pixscale), "field_arcsec": pytest.approx(SIZE * pixscale)}


def test_cli_cutouts_like_a_run_match_its_training_inputs(survey, tmp_path):
    from astrovader.cli import app

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text(json.dumps({"training_inputs": {"side_px": 40.0, "pixscale_arcsec": 0.5, "field_arcsec": 20.0}}))
    catalogue = write_catalogue(tmp_path / "gz2.csv", 2)
    result = CliRunner().invoke(app, ["cutouts", str(catalogue), "--out", str(tmp_path / "out"), "--base-url", survey.url,
                                      "--like", str(run), "--rate", "100", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert {(params["width"], params["scale"]) for _, _, params in survey.log} == {("40", "0.5")}
    assert (pd.read_csv(tmp_path / "out" / "catalog.csv")["pixscale"] == 0.5).all()

    (run / "model.json").write_text(json.dumps({"training_inputs": {"side_px": 40.0, "pixscale_arcsec": None, "field_arcsec": None}}))
    result = CliRunner().invoke(app, ["cutouts", str(catalogue), "--out", str(tmp_path / "again"), "--like", str(run)])
    assert isinstance(result.exception, AstroVaDErError) and "records no pixel scale" in str(result.exception)


def test_cli_downloads_with_a_base_url_and_reports_bad_options(survey, tmp_path):
    from astrovader.cli import app

    catalogue = write_catalogue(tmp_path / "gz2.csv", 3)
    common = ["cutouts", str(catalogue), "--out", str(tmp_path / "out"), "--base-url", survey.url, "--size", str(SIZE)]
    result = CliRunner().invoke(app, [*common, "--scale-column", "petroR90_r", "--rate", "100", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert len(cutout_files(tmp_path / "out")) == 3
    assert len(pd.read_csv(tmp_path / "out" / "catalog.csv")) == 3

    result = CliRunner().invoke(app, [*common, "--scale-column", "petroR90_r", "--pixscale", "0.4"])
    assert isinstance(result.exception, AstroVaDErError) and "give exactly one" in str(result.exception)
