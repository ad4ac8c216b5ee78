"""One record per (data set, method, seed) run under a budget: made, or reused from an earlier
invocation with the same settings (a killed full run resumes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from astrovader.analysis.metrics import label_scores, majority_capture
from astrovader.atomic import read_json
from benchmarks.clustering.datasets import Budget, Dataset, Pixels, fingerprint, prepared_pixels
from benchmarks.clustering.methods import (
    OURS, PIXEL_BASELINES, full_epoch_count, run_clustpy, run_config, run_ours, run_pixel_baseline, time_to_final,
)
from benchmarks.common import RESULTS, write_result


def run_record(dataset: Dataset, method: str, seed: int, budget: Budget, pixels: Pixels) -> dict:
    """Train and score one (dataset, method, seed); the JSON-able record."""
    config = run_config(dataset, method, seed, budget)
    started = time.perf_counter()
    if method in OURS:
        result = run_ours(config, pixels)
    elif method in PIXEL_BASELINES:
        result = run_pixel_baseline(method, pixels, config.model.n_components, seed, config.model.aperture)
    else:
        result = run_clustpy(method, config, pixels, config.model.n_components, seed, budget)
    scores = label_scores(pixels.test_labels, result["clusters"])
    train_images, epochs = len(pixels.train), result["epochs"]
    full_epochs = full_epoch_count(dataset, method, seed)
    return {
        "dataset": dataset.name, "method": method, "seed": seed, "budget": budget.name,
        "classes": dataset.classes, "train_images": train_images, "test_images": len(pixels.test),
        "largest_class_share": round(largest_class_share(pixels.test_labels), 4),
        "rejected_inputs": pixels.rejected,
        "image_size": config.data.image_size, "epochs": epochs,
        "scores": {name: round(value, 4) for name, value in scores.items()},
        "train_seconds": round(result["train_seconds"], 3),
        "time_to_final": time_to_final(result["curve"], scores["accuracy"], result["train_seconds"]),
        "curve": result["curve"], "epoch_seconds": result.get("epoch_seconds", []),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "work": train_images * epochs, "full_work": pixels.full_train_rows * full_epochs,
        "details": result.get("details", {}), "config": config.to_dict(),
        "criteria": criteria(dataset, pixels, result["clusters"]),
    }


def criteria(dataset: Dataset, pixels: Pixels, clusters: np.ndarray) -> dict[str, float]:
    """Issue 20's criteria where the data set allows them: on the simulated galaxies the NMI of
    the components against the truth's morphology, companions, S/N and position angle; on GZ1
    the share of edge-on galaxies in edge-on-majority components and of ellipticals that
    components at >= 90 % elliptical purity hold. Empty elsewhere."""
    if dataset.name == "simulated":
        from astrovader.analysis.truth import attribute_scores
        from astrovader.data.cache import Cache

        test_ids = Cache(pixels.cache).split("test")["id_str"].to_numpy()
        scores = attribute_scores(clusters, test_ids, dataset.catalogue.parent / "truth.parquet")
        return {name: scores[name] for name in ("nmi_morphology", "nmi_has_companion", "nmi_snr", "nmi_position_angle")}
    if dataset.name == "gz1":
        return gz1_capture(dataset, pixels.test_labels, clusters)
    return {}


def gz1_class_codes(dataset: Dataset) -> pd.Series:
    """GZ1 class code by class name, from the catalogue's gz1_class / gz1_class_name pairs."""
    from astrovader.data.catalogue import read_catalogue

    return read_catalogue(dataset.catalogue).drop_duplicates("gz1_class").set_index("gz1_class_name")["gz1_class"]


def gz1_capture(dataset: Dataset, labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """Issue 20's GZ1 criteria (`analysis.metrics.majority_capture`)."""
    names = gz1_class_codes(dataset)
    edge_on = majority_capture(labels, clusters, names["edge_on"])
    elliptical = majority_capture(labels, clusters, names["elliptical"], min_purity=0.9)
    return {"edge_on_in_edge_on_components": round(edge_on["completeness"], 4),
            "ellipticals_at_90_percent_purity": round(elliptical["pure_completeness"], 4)}


def largest_class_share(labels: np.ndarray) -> float:
    """The accuracy of one cluster for everything: what accuracy means on unbalanced classes."""
    return float(np.unique(labels, return_counts=True)[1].max() / len(labels))


def record_name(dataset: str, method: str, seed: int, budget: Budget) -> str:
    """results/[budget folder/]clustering/<dataset>-<method>-seed<N>: a quick run never
    overwrites a full run's record."""
    return str(Path(budget.folder) / "clustering" / f"{dataset}-{method}-seed{seed}")


def run_all(datasets: list[Dataset], methods: list[str], seeds: list[int], budget: Budget,
            echo: Callable[[str], None] = print) -> tuple[list[dict], list[str]]:
    """Every (dataset, method, seed), reusing records made with the same settings; returns the
    records and one line per failed run (the others go on)."""
    records, failures = [], []
    prepared: dict[str, Pixels] = {}  # by data settings: methods that share them share the pixels
    for dataset in datasets:
        for method in methods:
            config = dataset.method_config(method)
            data_key = fingerprint([dataset.name, str(dataset.catalogue), *(
                dataset.prepare_settings(config, budget, part).model_dump(mode="json") for part in ("train", "test"))])
            for seed in seeds:
                identity = {"run": [dataset.name, method, seed], "budget": budget.name,
                            "config": run_config(dataset, method, seed, budget).to_dict(),
                            "catalogue": str(dataset.catalogue), "data": data_key}
                name = record_name(dataset.name, method, seed, budget)
                path = RESULTS / f"{name}.json"
                if path.exists() and read_json(path).get("fingerprint") == fingerprint(identity):
                    records.append(read_json(path))
                    echo(f"{dataset.name} {method} seed {seed}: reused {path.name}")
                    continue
                try:
                    if data_key not in prepared:
                        prepared[data_key] = prepared_pixels(dataset, config, budget)
                    record = run_record(dataset, method, seed, budget, prepared[data_key])
                except Exception as error:  # noqa: BLE001 - an unattended run goes on; failures are listed
                    message = " ".join(str(error).split())[:300]  # one line in the table
                    failures.append(f"{dataset.name} {method} seed {seed}: {error.__class__.__name__}: {message}")
                    echo(f"FAILED {failures[-1]}")
                    continue
                record["fingerprint"] = fingerprint(identity)
                write_result(name, record, echo=False)
                records.append(record)
                echo(describe(record))
    return records, failures


def describe(record: dict) -> str:
    scores, reached = record["scores"], record["time_to_final"]
    return (f"{record['dataset']} {record['method']} seed {record['seed']}: accuracy {scores['accuracy']:.1%}, "
            f"NMI {scores['nmi']:.3f}, ARI {scores['ari']:.3f}; trained in {record['train_seconds']:.1f} s, "
            f"final accuracy reached after {reached['seconds']:.1f} s")


def budget_records(budget: Budget) -> list[dict]:
    """Every record of this budget in its results/[folder/]clustering (earlier invocations' too)."""
    records = [read_json(path) for path in sorted((RESULTS / budget.folder / "clustering").glob("*.json"))]
    return [record for record in records if record.get("budget") == budget.name]
