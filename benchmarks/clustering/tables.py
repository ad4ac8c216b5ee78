"""The records of one budget as results/clustering.md: scores over seeds, the machines, the
estimated duration of a full run."""

from __future__ import annotations

import statistics
from collections import Counter


from benchmarks.clustering.datasets import Budget
from benchmarks.clustering.methods import CLOSE_TO_FINAL, METHODS
from benchmarks.common import machine_description

PUBLISHED = {"mnist": "VaDE (Jiang et al. 2017) published 94.46 % accuracy on MNIST, from one run."}


def summary_table(records: list[dict], budget: Budget, failures: list[str] = ()) -> str:
    """Markdown: per dataset x method, the median and [min-max] over seeds."""
    lines = [
        f"# Clustering benchmark ({budget.name})", "",
        "Held-out scores with K = the number of classes; median [min, max] over seeds. Accuracy uses the "
        "best one-to-one matching of clusters to classes (Hungarian). \"Final accuracy reached\": training "
        f"seconds until the held-out accuracy first came within {CLOSE_TO_FINAL:.0%} of its final value "
        "(scored after every epoch; methods without epochs: their whole training time).", "",
    ]
    if budget.name == "quick":
        lines += ["Quick mode: small subsets and a few epochs, to check that everything runs; the scores "
                  "mean nothing.", ""]
    by_dataset: dict[str, dict[str, list[dict]]] = {}
    for record in records:
        by_dataset.setdefault(record["dataset"], {}).setdefault(record["method"], []).append(record)
    for dataset, methods in by_dataset.items():
        first = next(iter(methods.values()))[0]
        lines += [f"## {dataset}", "", f"{first['train_images']} training / {first['test_images']} test images "
                  f"({first.get('rejected_inputs', '?')} inputs rejected by prepare), K = {first['classes']}. "
                  f"{largest_class_sentence(first)}{PUBLISHED.get(dataset, '')}".rstrip(), "",
                  "| Method | Seeds | Pixels | Epochs | Accuracy % | NMI | ARI | Train s | Final accuracy reached, s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for method in sorted(methods, key=METHODS.index):
            runs = sorted(methods[method], key=lambda run: run["seed"])
            lines.append("| " + " | ".join([
                method, ", ".join(str(run["seed"]) for run in runs), f"{runs[0]['image_size']} px",
                str(runs[0]["epochs"]),
                spread([run["scores"]["accuracy"] * 100 for run in runs], "{:.1f}"),
                spread([run["scores"]["nmi"] for run in runs], "{:.3f}"),
                spread([run["scores"]["ari"] for run in runs], "{:.3f}"),
                spread([run["train_seconds"] for run in runs], "{:.0f}"),
                spread([run["time_to_final"]["seconds"] for run in runs], "{:.0f}"),
            ]) + " |")
        lines += ["", *criteria_table(methods)]
    if failures:
        lines += ["## Failed runs", "", *[f"- {failure}" for failure in failures], ""]
    lines += machines_section(records)
    if budget.name == "quick" and records:
        lines += [full_run_estimate(records), ""]
    return "\n".join(lines)


def criteria_table(methods: dict[str, list[dict]]) -> list[str]:
    """Issue 20's criteria per method (`records.criteria`), median [min, max] over seeds; none
    when no record of the data set has them (other data sets, records made before)."""
    names = next((list(run["criteria"]) for runs in methods.values() for run in runs if run.get("criteria")), [])
    if not names:
        return []
    lines = ["| Method | " + " | ".join(name.replace("_", " ") for name in names) + " |",
             "|---|" + "---|" * len(names)]
    for method in sorted(methods, key=METHODS.index):
        runs = [run for run in methods[method] if run.get("criteria")]
        if runs:
            lines.append(f"| {method} | " + " | ".join(
                spread([run["criteria"][name] for run in runs], "{:.3f}") for name in names) + " |")
    return [*lines, ""]


def largest_class_sentence(record: dict) -> str:
    share = record.get("largest_class_share")  # absent from records made before it was kept
    if share is None:
        return ""
    return f"The largest class holds {share:.1%} of the test images: one cluster for everything scores that accuracy. "


def machines_section(records: list[dict]) -> list[str]:
    """Which machines made the records (a table built over several sittings may mix them, and
    then its times do not compare), with how many runs each."""
    counts = Counter(machine_description(record.get("machine", {})) for record in records)
    if not counts:
        return []
    lines = ["## Machines", ""] + [f"- {description}: {count} run(s)" for description, count in counts.items()]
    if len(counts) > 1:
        lines.append("- Several machines: compare the times of rows measured on the same machine only.")
    return [*lines, ""]


def spread(values: list[float], style: str) -> str:
    median = style.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} [{style.format(min(values))}, {style.format(max(values))}]"


def full_run_seconds(record: dict) -> float:
    """A run's duration at full size: its fixed costs (start-up, scoring, prediction) as
    measured, plus its training at the measured seconds per image x epoch (the median of the
    epochs after the first, which warms up; the whole training time without epoch timings)
    times the full run's images x epochs."""
    epochs = record.get("epoch_seconds") or []
    if len(epochs) >= 2:
        scaled, per_work = sum(epochs), statistics.median(epochs[1:]) / record["train_images"]
    else:
        scaled, per_work = record["train_seconds"], record["train_seconds"] / max(record["work"], 1)
    return record["wall_seconds"] - scaled + per_work * record["full_work"]


def full_run_estimate(records: list[dict]) -> str:
    hours = sum(map(full_run_seconds, records)) / 3600
    return (f"Estimated full clustering run for the same data sets, methods and seeds, at the speed measured "
            f"here: {hours:.1f} h (`full_run_seconds`: each run's training scaled to the full run's images x "
            f"epochs; data preparation and simulation not included).")
