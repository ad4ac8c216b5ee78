"""Every benchmark in one command: clustering quality against peers and ground truth over seeds
(benchmarks.clustering -> results/clustering/*.json + results/clustering.md) and the throughput
scripts (benchmarks.throughput -> results/*_throughput.json + results/throughput.md).

    python -m benchmarks.run [--quick] [--seeds 3] [--mnist DIR] [--labelled CATALOGUE
        --label-column C [--labelled-config YAML]] [--only NAME ...] [--clustpy]

--only takes section names (clustering, throughput), data sets, methods and throughput
scripts; a section runs when it, one of its items, or nothing at all is named. Runs already
recorded with the same settings are reused, so a killed full run picks up where it stopped.
Exit status 1 when any run or script failed (each is listed in its table), 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from astrovader.atomic import write_text_atomic
from astrovader.errors import AstroVaDErError
from benchmarks import clustpy_runner, throughput
from benchmarks.clustering import datasets, methods, records, tables
from benchmarks.common import RESULTS

DATASETS = ("fashion-mnist", "mnist", "simulated", "gz1", "labelled")
SECTIONS = {"clustering": DATASETS + methods.METHODS, "throughput": throughput.SCRIPTS}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small subsets, a few epochs and short timings: minutes, to check that everything runs")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per data set and method (default 3)")
    parser.add_argument("--mnist", type=Path, help="folder with MNIST's IDX files (train-* and t10k-*)")
    parser.add_argument("--fashion-mnist", type=Path, default=datasets.SHARED_DATA / "fashion-mnist",
                        help="folder with Fashion-MNIST's IDX files (default: ../shared/data/fashion-mnist)")
    parser.add_argument("--gz1", type=Path, default=datasets.SHARED_DATA / "gz1-sdss" / "catalog.csv",
                        help="GZ1 catalogue with a gz1_class column (default: ../shared/data/gz1-sdss/catalog.csv)")
    parser.add_argument("--labelled", type=Path, help="any catalogue (CSV, Parquet, FITS) with a label column")
    parser.add_argument("--label-column", help="the --labelled catalogue's column of classes")
    parser.add_argument("--labelled-config", type=Path,
                        help="config YAML for the --labelled catalogue (default: configs/galaxies-conv.yaml)")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        help=f"run only these: {', '.join(SECTIONS)}, data sets ({', '.join(DATASETS)}), methods "
                             f"({', '.join(methods.METHODS)}), throughput scripts ({', '.join(throughput.SCRIPTS)})")
    parser.add_argument("--clustpy", action="store_true",
                        help="also run ClustPy's VaDE (makes benchmarks/.clustpy-venv once: ~6 GB, a few minutes)")
    arguments = parser.parse_args(argv)
    known = set(SECTIONS) | {name for names in SECTIONS.values() for name in names}
    unknown = sorted(set(arguments.only) - known)
    if unknown:
        parser.error(f"--only {' '.join(unknown)}: unknown (choose from {', '.join(sorted(known))})")
    if arguments.seeds < 1:
        parser.error(f"--seeds {arguments.seeds}: must be at least 1")
    if (arguments.labelled is None) != (arguments.label_column is None):
        parser.error("--labelled and --label-column go together")
    return arguments


def selected(choices: tuple[str, ...], only: list[str]) -> list[str]:
    """The `choices` that --only keeps (all when it names none of them)."""
    named = [choice for choice in choices if choice in only]
    return named or list(choices)


def runs_section(section: str, only: list[str]) -> bool:
    return not only or section in only or any(name in only for name in SECTIONS[section])


def chosen_datasets(arguments, budget: datasets.Budget, notes: list[str]) -> list[datasets.Dataset]:
    """The data sets that --only keeps and that are present (absent ones become notes)."""
    wanted = selected(DATASETS, arguments.only)
    found = []
    if "fashion-mnist" in wanted:
        if arguments.fashion_mnist.exists():
            found.append(datasets.idx_dataset("fashion-mnist", arguments.fashion_mnist))
        else:
            notes.append(f"fashion-mnist skipped: {arguments.fashion_mnist} not found")
    if "mnist" in wanted and arguments.mnist is not None:
        found.append(datasets.idx_dataset("mnist", arguments.mnist))
    elif "mnist" in arguments.only:
        notes.append("mnist skipped: give its IDX folder with --mnist DIR")
    if "simulated" in wanted:
        found.append(datasets.simulated_dataset(budget))
    if "gz1" in wanted:
        if arguments.gz1.exists():
            found.append(datasets.catalogue_dataset("gz1", arguments.gz1, "gz1_class"))
        else:
            notes.append(f"gz1 skipped: {arguments.gz1} not found")
    if "labelled" in wanted and arguments.labelled is not None:
        name = f"labelled-{arguments.labelled.resolve().parent.name}"
        found.append(datasets.catalogue_dataset(name, arguments.labelled, arguments.label_column,
                                                  arguments.labelled_config))
    elif "labelled" in arguments.only:
        notes.append("labelled skipped: give a catalogue with --labelled CATALOGUE --label-column C")
    return [datasets.counted(dataset) for dataset in found]


def chosen_methods(arguments, notes: list[str]) -> list[str]:
    chosen = selected(methods.METHODS, arguments.only)
    clustpy = [method for method in chosen if method in clustpy_runner.METHODS]
    if not clustpy:
        return chosen
    if not arguments.clustpy:
        if any(method in arguments.only for method in clustpy):
            notes.append("ClustPy skipped: it runs only with --clustpy")
        return [method for method in chosen if method not in clustpy]
    try:
        clustpy_runner.ensure_venv()
    except clustpy_runner.ClustPyError as error:
        notes.append(f"ClustPy skipped: {error}")
        return [method for method in chosen if method not in clustpy]
    return chosen


def run_clustering(arguments) -> list[str]:
    budget = datasets.QUICK if arguments.quick else datasets.FULL
    notes: list[str] = []
    chosen = chosen_datasets(arguments, budget, notes)
    made, failures = records.run_all(chosen, chosen_methods(arguments, notes), list(range(arguments.seeds)), budget)
    table = tables.summary_table(records.budget_records(budget), budget, failures)
    if notes:
        table += "\n" + "\n".join(f"Note: {note}." for note in notes) + "\n"
    path = write_text_atomic(RESULTS / budget.folder / "clustering.md", table)
    print(f"clustering: {len(made)} run(s), {len(failures)} failed -> {path}")
    return failures


def run_throughput(arguments) -> list[str]:
    throughput.share_peak(arguments.quick)
    outcomes = throughput.run_scripts(selected(throughput.SCRIPTS, arguments.only), arguments.quick)
    path = throughput.write_table(outcomes, arguments.quick)
    failed = [f"{name}_throughput: {outcome['error']}" for name, outcome in outcomes.items() if outcome["error"]]
    print(f"throughput: {len(outcomes)} script(s), {len(failed)} failed -> {path}")
    return failed


def main(argv: list[str] | None = None) -> int:
    arguments = parse(argv)
    # Lightning's own use of a deprecated torch name, repeated at every training run.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    started = time.perf_counter()
    failures = []
    try:
        if runs_section("clustering", arguments.only):
            failures += run_clustering(arguments)
        if runs_section("throughput", arguments.only):
            failures += run_throughput(arguments)
    except AstroVaDErError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"benchmarks done in {time.perf_counter() - started:.0f} s" + (f"; {len(failures)} failure(s)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
