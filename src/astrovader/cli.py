"""The `astrovader` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from astrovader.config import Config
from astrovader.console import console, progress_bar
from astrovader.errors import AstroVaDErError

app = typer.Typer(
    help="AstroVaDEr: unsupervised galaxy morphology clustering and generation (VaDE + s3VDC).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

PresetOption = typer.Option("cpu", "--preset", help="paper, cpu (default) or tiny")
ConfigOption = typer.Option(None, "--config", help="YAML config file (overrides the preset)")
VotesSchemaOption = typer.Option(
    "auto", "--votes-schema", help="column names of the vote table: gz2 (Hart et al. 2016), decals (GZ DECaLS, "
    "galaxy-datasets) or auto",
)


def load_config(preset: str = "cpu", config_file: Optional[Path] = None, **overrides) -> Config:
    """The preset, then the config file, then explicit dotted overrides ({'train.seed': 3})."""
    config = Config.from_yaml(config_file) if config_file else Config.from_preset(preset)
    present = {key: value for key, value in overrides.items() if value is not None}
    return config.with_overrides(present) if present else config


@app.command()
def prepare(
    catalogue: Path = typer.Argument(..., help="catalogue (CSV/Parquet/FITS), image folder, or IDX file/folder"),
    out: Path = typer.Option(..., "--out", help="cache folder to create (or resume)"),
    preset: str = PresetOption,
    config_file: Optional[Path] = ConfigOption,
    where: Optional[str] = typer.Option(None, "--where", help="row selection, e.g. 't01_total_votes > 36'"),
    size: Optional[int] = typer.Option(None, "--size", help="model input size in pixels"),
    workers: Optional[int] = typer.Option(None, "--workers", help="decoding processes (default 2)"),
) -> None:
    """Decode every image once into a memory-mapped cache with a fixed split; resumable."""
    from astrovader.data.cache import prepare as run_prepare

    config = load_config(preset, config_file, **{"data.where": where, "data.image_size": size, "data.workers": workers})
    with progress_bar("prepare") as update:
        summary = run_prepare(catalogue, out, config.data, progress=update)
    console.print(summary.line())
    if summary.rejected:
        console.print(f"rejected inputs and reasons: {out / 'rejects.csv'}")


@app.command()
def simulate(
    n: int = typer.Option(2000, "--n", min=1, help="number of galaxies"),
    size: int = typer.Option(96, "--size", min=8, help="stamp side in pixels (SDSS 0.396 arcsec/px)"),
    out: Path = typer.Option(..., "--out", help="folder for images/, catalog.csv and truth.parquet"),
    seed: int = typer.Option(0, "--seed", help="same seed, same images"),
    companion_fraction: float = typer.Option(0.5, "--companion-fraction", min=0, max=1, help="fraction with companions"),
    workers: int = typer.Option(2, "--workers", min=1, help="worker processes"),
) -> None:
    """Simulate realistic galaxies with GalSim (bulge + disk, PSF, noise, companions) and their truth."""
    from astrovader.data.sources.simulate import simulate as run_simulate

    with progress_bar("simulate", total=n) as update:
        summary = run_simulate(
            n=n, size=size, out=out, seed=seed, companion_fraction=companion_fraction, workers=workers, progress=update
        )
    console.print(summary.line())


@app.command()
def cutouts(
    catalogue: Path = typer.Argument(..., help="table with id, ra, dec (and a size column for --scale-column)"),
    out: Path = typer.Option(..., "--out", help="folder for the cutouts and their catalogue"),
    survey: str = typer.Option("sdss", "--survey", help="sdss, legacy, or hips:<HiPS id>"),
    size: int = typer.Option(256, "--size", min=8, help="cutout side in pixels"),
    scale_column: Optional[str] = typer.Option(None, "--scale-column", help="size column, e.g. petroR90_r (arcsec)"),
    scale_factor: float = typer.Option(0.02, "--scale-factor", help="arcsec per pixel = factor x scale column"),
    pixscale: Optional[float] = typer.Option(None, "--pixscale", help="fixed arcsec per pixel (instead of a column)"),
    id_column: str = typer.Option("id_str", "--id-column"),
    ra_column: str = typer.Option("ra", "--ra-column"),
    dec_column: str = typer.Option("dec", "--dec-column"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="override the survey's service URL"),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="requests in flight at most"),
    rate: float = typer.Option(5.0, "--rate", help="requests per second at most (be polite)"),
    retries: int = typer.Option(4, "--retries", min=0, help="retries on timeouts and 5xx (never on 4xx)"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds per request"),
    image_format: str = typer.Option("jpg", "--format", help="jpg or fits (fits: legacy and hips surveys)"),
    like: Optional[Path] = typer.Option(None, "--like", help="trained run: take --size and --pixscale from its training inputs"),
) -> None:
    """Download one survey cutout per catalogue row (resumable, atomic) and write a catalogue for `prepare`."""
    from astrovader.data.sources.cutouts import download_cutouts, geometry_of_run
    from astrovader.data.sources.surveys import CutoutOptions

    if like is not None:
        size, pixscale, scale_column = *geometry_of_run(like), None

    options = CutoutOptions(
        survey=survey, size=size, scale_column=scale_column, scale_factor=scale_factor, pixscale=pixscale,
        id_column=id_column, ra_column=ra_column, dec_column=dec_column, base_url=base_url,
        concurrency=concurrency, rate=rate, retries=retries, timeout=timeout, image_format=image_format,
    )
    with progress_bar("cutouts") as update:
        summary = download_cutouts(catalogue, out, options, progress=update)
    console.print(summary.line())


@app.command()
def train(
    data: Optional[Path] = typer.Argument(
        None, help="prepared cache, catalogue, image folder or IDX files; none: simulated galaxies"
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="run folder to create"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="run folder to continue after an interruption"),
    preset: str = PresetOption,
    config_file: Optional[Path] = ConfigOption,
    seed: Optional[int] = typer.Option(None, "--seed", help="same seed, same model"),
    method: Optional[str] = typer.Option(None, "--method", help="vade (default) or two_stage (autoencoder + GMM baseline)"),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto (default), fp32 or bf16"),
    accelerator: Optional[str] = typer.Option(None, "--accelerator", help="auto, cpu or gpu"),
    devices: Optional[str] = typer.Option(None, "--devices", help="devices per node (DDP when > 1), or auto"),
    num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="nodes (DDP across nodes)"),
) -> None:
    """Train AstroVaDEr with the s3VDC schedule; writes config, metrics.csv, checkpoints and the model."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from astrovader.train.run import train_run

    if (out is None) == (resume is None):
        raise AstroVaDErError("train: give exactly one of --out RUN_DIR (new run) or --resume RUN_DIR")
    if resume is not None:
        if data is not None or config_file is not None or seed is not None:
            raise AstroVaDErError("train --resume: the run's own data and config are used; drop DATA/--config/--seed")
        folder = train_run(resume, resume=True)
    else:
        config = load_config(preset, config_file, **{
            "train.seed": seed, "train.method": method, "train.precision": precision,
            "train.accelerator": accelerator, "train.devices": _devices(devices), "train.num_nodes": num_nodes,
        })
        folder = train_run(out, config, data)
    # Lightning sets the global rank of each process however it was started (its own launcher,
    # torchrun, srun); every process returns here, only rank 0 reports.
    if rank_zero_only.rank == 0:
        console.print(f"model written to {folder / 'model.safetensors'} (+ model.json, metrics.csv)")


def _devices(text: Optional[str]):
    return None if text is None else (int(text) if text.isdigit() else text)


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="trained run folder (model.safetensors + model.json)"),
    out: Path = typer.Option(..., "--out", help="folder for the images, tables, PNGs and generate.json"),
    n: int = typer.Option(0, "--n", min=0, help="synthetic galaxies to make (Fig. 9); 0: none"),
    component: Optional[list[int]] = typer.Option(None, "--component", help="sample only this component (repeatable)"),
    variance_scale: float = typer.Option(1.0, "--variance-scale", min=0, help="multiplies the prior variances (0.5: the public code's halving)"),
    seed: int = typer.Option(0, "--seed", help="same seed, same images"),
    image_format: str = typer.Option("npy", "--format", help="synthetic images as npy or fits"),
    table_format: str = typer.Option("parquet", "--table", help="index, component, z per image as parquet or csv"),
    chunk: int = typer.Option(1024, "--chunk", min=1, help="images decoded between writes (memory, not results)"),
    data: Optional[Path] = typer.Option(None, "--data", help="prepared cache of real galaxies (default: the run's own)"),
    split: str = typer.Option("test", "--split", help="galaxies of this split: train, validation, test or all"),
    tour: bool = typer.Option(False, "--tour", help="interpolation tour through the components' most probable members (Fig. 10)"),
    open_tour: bool = typer.Option(False, "--open-tour", help="make the tour an open path (no leg back to the start)"),
    traversal: bool = typer.Option(False, "--traversal", help="each latent from its minimum to its maximum (Fig. 11)"),
    steps: int = typer.Option(8, "--steps", min=2, help="images per interpolation leg or traversal row"),
    deblend: Optional[str] = typer.Option(None, "--deblend", help="id of a galaxy to deblend (Fig. 12)"),
    clean_component: Optional[int] = typer.Option(None, "--clean-component", help="component whose closest member --deblend moves towards"),
    interpolate: Optional[tuple[str, str]] = typer.Option(None, "--interpolate", help="ids of two galaxies to interpolate between"),
) -> None:
    """Synthetic galaxies, interpolation tour, latent traversal, deblending and pair interpolation."""
    from astrovader.generate.run import GenerateRequest, run_generate

    request = GenerateRequest(
        n=n, components=component or None, seed=seed, variance_scale=variance_scale, image_format=image_format,
        table_format=table_format, chunk=chunk, data=data, split=split, tour=tour, closed_tour=not open_tour,
        traversal=traversal, steps=steps, deblend=deblend, clean_component=clean_component, pair=interpolate,
    )
    with progress_bar("generate", total=n or None) as update:
        summary = run_generate(run_dir, out, request, progress=update)
    console.print(summary)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="trained run folder (model.safetensors + model.json)"),
    out: Path = typer.Option(..., "--out", help="folder for report.html, the PNG figures and summary.json"),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="`astrovader predict` output; default: encode the cache split"),
    data: Optional[Path] = typer.Option(None, "--data", help="prepared cache to analyse (default: the run's own)"),
    split: str = typer.Option("test", "--split", help="objects of this split: train, validation, test or all"),
    votes: Optional[Path] = typer.Option(None, "--votes", help="Galaxy Zoo vote table (CSV/Parquet/FITS), joined on id"),
    votes_schema: str = VotesSchemaOption,
    vote_option: Optional[list[str]] = typer.Option(None, "--vote-option", help="KEY=VALUE vote setting, repeatable (e.g. edge_on_threshold=0.8)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="column of known classes (default: label_name, gz1_class_name, label or gz1_class)"),
    subset: Optional[str] = typer.Option(None, "--subset", help="components for Fig. 8 and the Galaxy Zoo comparison, e.g. 0,3,5"),
    choose_k_fits: int = typer.Option(10, "--choose-k-fits", min=0, help="Dirichlet-process fits for choosing K (0: skip)"),
    seed: int = typer.Option(0, "--seed", help="same seed, same report"),
) -> None:
    """Every table and figure of the paper's sections 4-5: PNGs and one self-contained report.html."""
    from astrovader.analysis.galaxy_zoo import VoteSettings
    from astrovader.report import ReportOptions, build_report

    options = ReportOptions(
        predictions=predictions, data=data, split=split, votes=votes, vote_settings=VoteSettings.from_pairs(vote_option, votes_schema),
        labels=labels, subset=subset, choose_k_fits=choose_k_fits, seed=seed,
    )
    with progress_bar("report") as update:
        summary = build_report(run_dir, out, options, progress=update)
    console.print(summary.line())


@app.command("choose-k")
def choose_k(
    run_dir: Path = typer.Argument(..., help="trained run folder (model.safetensors + model.json)"),
    data: Optional[Path] = typer.Argument(None, help="prepared cache to embed (default: the run's own)"),
    split: str = typer.Option("train", "--split", help="embed this split: train, validation, test or all"),
    fits: int = typer.Option(20, "--fits", help="mixtures to fit, each on its own random batch"),
    batch_size: int = typer.Option(2000, "--batch-size", help="embeddings per fit"),
    max_components: int = typer.Option(30, "--max-components", help="components of each mixture (well above the expected K)"),
    threshold: float = typer.Option(0.01, "--threshold", help="a component counts when its weight exceeds this"),
    seed: int = typer.Option(0, "--seed", help="same seed, same batches and fits"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for choose_k.json and choose_k.png (default: RUN_DIR)"),
) -> None:
    """Choose K (section 4.1): how many components a Dirichlet-process mixture keeps over many batches."""
    from astrovader.analysis.choose_k import choose_k_for_run, write_choose_k

    with progress_bar("choose-k", total=fits) as update:
        result = choose_k_for_run(run_dir, data, split, fits, batch_size, max_components, threshold, seed, progress=update)
    json_path, png_path = write_choose_k(result, out or run_dir)
    typer.echo(result.distribution().to_string())
    console.print(f"{result.summary()} -> {json_path}, {png_path}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="trained run folder (model.safetensors + model.json)"),
    data: Path = typer.Argument(..., help="prepared cache, or a catalogue / image folder (decoded with the model's settings)"),
    out: Path = typer.Option(..., "--out", help="catalogue to write: a Parquet folder, or a .fits / .csv file"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="images read and predicted together (memory only, never results)"),
    output_format: Optional[str] = typer.Option(None, "--format", help="parquet (default), fits or csv; default from the --out suffix"),
    workers: int = typer.Option(2, "--workers", min=0, help="reader processes (0: read in this process)"),
    part_size: Optional[int] = typer.Option(None, "--part-size", min=1, help="rows per Parquet part, the unit of resume (default 65,536)"),
) -> None:
    """Cluster catalogue: one row per input (gamma, posterior, mu, logvar, likelihood, mse, error); resumable; torchrun shards it."""
    import os
    from contextlib import nullcontext

    from astrovader.predict import predict_catalogue

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, only rank 0 reports
    with progress_bar("predict") if main_rank else nullcontext() as update:
        summary = predict_catalogue(run_dir, data, out, batch_size, output_format, workers, part_size, progress=update)
    if main_rank:
        console.print(summary.line())


@app.command()
def tune(
    data: Optional[Path] = typer.Argument(
        None, help="prepared cache, catalogue, image folder or IDX files; none: simulated galaxies"
    ),
    out: Path = typer.Option(..., "--out", help="search folder: optuna.db, trial-NNNN/ runs, summary.json, best-config.yaml"),
    trials: int = typer.Option(20, "--trials", help="finished trials the study should hold (a resumed search runs the rest)"),
    objective: str = typer.Option("elbo", "--objective", help="elbo, reconstruction, silhouette or nmi (needs label or gz1_class)"),
    preset: str = PresetOption,
    config_file: Optional[Path] = ConfigOption,
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default sqlite:///OUT/optuna.db)"),
    study: str = typer.Option("astrovader", "--study", help="study name within the storage"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="start no new trial after this many seconds"),
) -> None:
    """Search hyper-parameters with Optuna (TPE, median pruning); resumable from its storage."""
    from astrovader.train.tune import tune as run_tune

    config = load_config(preset, config_file)
    with progress_bar("tune", total=trials) as update:
        summary = run_tune(data, out, config, trials=trials, objective=objective, storage=storage, study_name=study,
                           timeout=timeout, progress=update)
    console.print(summary.line())


@app.command()
def run(
    data: Optional[Path] = typer.Argument(
        None, help="prepared cache, catalogue, image folder or IDX files; none: simulated galaxies with known truth"
    ),
    out: Path = typer.Option(Path("runs/astrovader"), "--out", help="run folder (re-run the command to resume it)"),
    preset: str = PresetOption,
    config_file: Optional[Path] = ConfigOption,
    seed: Optional[int] = typer.Option(None, "--seed", help="same seed, same model"),
    votes: Optional[Path] = typer.Option(None, "--votes", help="Galaxy Zoo vote table for the report (CSV/Parquet/FITS)"),
    votes_schema: str = VotesSchemaOption,
    labels: Optional[str] = typer.Option(None, "--labels", help="column of known classes to score the clusters against"),
) -> None:
    """The main job: prepare (or simulate) -> train -> predict -> report, resumable in one run folder."""
    from astrovader.analysis.galaxy_zoo import VoteSettings
    from astrovader.end_to_end import run_pipeline

    config = load_config(preset, config_file, **{"train.seed": seed})
    summary = run_pipeline(out, config, data, votes=votes, vote_settings=VoteSettings.from_pairs([], votes_schema),
                           labels=labels, progress=progress_bar)
    console.print(summary.line())


@app.command()
def explore(
    run_dir: Path = typer.Argument(..., help="trained run folder (model.safetensors + model.json)"),
    predictions: Optional[Path] = typer.Argument(None, help="`astrovader predict` catalogue (default: RUN/predictions)"),
    port: int = typer.Option(8050, "--port", min=1, max=65535, help="port to listen on"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: the whole network, with a warning)"),
    data: Optional[Path] = typer.Option(None, "--data", help="prepared cache holding the catalogue's images (default: the run's own)"),
    map_method: str = typer.Option("tsne", "--map", help="latent map: tsne (the paper's) or pca (instant)"),
) -> None:
    """Interactive cluster explorer in the browser: components, members, latent map, samples, annotations, export."""
    from astrovader.explore import serve

    serve(run_dir, predictions, host=host, port=port, data=data, map_method=map_method, say=typer.echo)


@app.command("config")
def show_config(
    preset: str = PresetOption,
    config_file: Optional[Path] = ConfigOption,
    out: Optional[Path] = typer.Option(None, "--out", help="write the YAML here instead of printing it"),
) -> None:
    """Print (or write) the full configuration of a preset or config file as YAML."""
    config = load_config(preset, config_file)
    text = config.to_yaml(out)
    if out is None:
        typer.echo(text, nl=False)


def main() -> None:
    from astrovader.hardware import reexec_with_allocator

    reexec_with_allocator(sys.argv[1:])
    try:
        app()
    except AstroVaDErError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
