"""Hyper-parameter search with Optuna (the paper used hyperopt): TPE sampling over a space
centred on a base config, median pruning from per-epoch validation values, and a study kept in
an Optuna storage (SQLite by default) so that a search can be resumed and inspected.

Search folder:
    optuna.db          the study (or any Optuna RDB storage given by URL)
    cache/             the prepared data, when DATA was not already a cache
    trial-NNNN/        one training run per trial, with its own config.yaml (see train/run.py)
    trials.csv         every trial: number, state, value, parameters, start and end
    summary.json       objective, direction, trial counts, best value, parameters and trial
    best-config.yaml   the base config with the best trial's parameters

Trials run one process each (devices = 1); run several `astrovader tune` processes on the same
storage to search in parallel. A trial trains the base config's whole schedule, so search with a
shortened schedule and train the best config at full length afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.callbacks import Callback
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sklearn.metrics import normalized_mutual_info_score

from astrovader.analysis.metrics import simplified_silhouette
from astrovader.atomic import write_json_atomic, write_with
from astrovader.config import Config
from astrovader.data.cache import Cache
from astrovader.data.catalogue import LABEL_COLUMNS, label_column
from astrovader.data.loader import read_rows
from astrovader.errors import InputError, TrainingError
from astrovader.model.inference import model_outputs
from astrovader.train.module import VaDETraining
from astrovader.train.run import resolve_data, train_run

# Minimised or maximised; the first two are the validation means EpochMetrics writes.
OBJECTIVES = {"elbo": "minimize", "reconstruction": "minimize", "silhouette": "maximize", "nmi": "maximize"}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# -- the search space: one place --------------------------------------------------------------
def search_space(base: Config) -> dict[str, BaseDistribution]:
    """The parameters searched, in ranges around the base config's own values:

    filter_scale       0.5, 1 or 2 times the base filters of every block
    kernels            the base kernels, all 3 x 3 or all 5 x 5 (other than the base's, the
                       decoder mirrors them)
    latent_dim         J / 2 .. 2 J
    n_components       K / 2 .. 2 K (at least 2)
    alpha              alpha / 10 .. 10 alpha, log scale (alpha-phase KL weight, eq. 14)
    mixture_kl_weight  w / 3 .. 3 w, log scale (the paper's extra 0.3)
    learning_rate      lr / 10 .. 10 lr, log scale
    alpha_epochs, anneal_epochs, static_epochs: n / 2 .. 2 n (alpha and annealing at least 1)
    """
    model, train = base.model, base.train

    def around(value: int, smallest: int) -> IntDistribution:
        return IntDistribution(max(smallest, value // 2), max(smallest, 2 * value))

    return {
        "filter_scale": CategoricalDistribution((0.5, 1.0, 2.0)),
        "kernels": CategoricalDistribution(_kernel_choices(model.kernels)),
        "latent_dim": around(model.latent_dim, 1),
        "n_components": around(model.n_components, 2),
        "alpha": FloatDistribution(train.alpha / 10, train.alpha * 10, log=True),
        "mixture_kl_weight": FloatDistribution(train.mixture_kl_weight / 3, train.mixture_kl_weight * 3, log=True),
        "learning_rate": FloatDistribution(train.learning_rate / 10, train.learning_rate * 10, log=True),
        "alpha_epochs": around(train.alpha_epochs, 1),
        "anneal_epochs": around(train.anneal_epochs, 1),
        "static_epochs": around(train.static_epochs, 0),
    }


def config_for(base: Config, params: dict[str, Any]) -> Config:
    """The base config with a point of the search space (missing parameters keep base values)."""
    params = {**base_params(base), **params}
    kernels = tuple(int(size) for size in params["kernels"].split("-"))
    return base.with_overrides({
        "model.filters": tuple(max(1, round(count * params["filter_scale"])) for count in base.model.filters),
        "model.kernels": kernels,
        "model.decoder_kernels": base.model.decoder_kernels if kernels == base.model.kernels else None,
        **{f"model.{name}": params[name] for name in ("latent_dim", "n_components")},
        **{f"train.{name}": params[name] for name in (
            "alpha", "mixture_kl_weight", "learning_rate", "alpha_epochs", "anneal_epochs", "static_epochs",
        )},
    })


def base_params(base: Config) -> dict[str, Any]:
    """The base config as a point of its own search space (the first trial of every study)."""
    model, train = base.model, base.train
    return {
        "filter_scale": 1.0, "kernels": _kernel_pattern(model.kernels), "latent_dim": model.latent_dim,
        "n_components": model.n_components, "alpha": train.alpha, "mixture_kl_weight": train.mixture_kl_weight,
        "learning_rate": train.learning_rate, "alpha_epochs": train.alpha_epochs,
        "anneal_epochs": train.anneal_epochs, "static_epochs": train.static_epochs,
    }


def _kernel_pattern(kernels: Sequence[int]) -> str:
    return "-".join(str(size) for size in kernels)  # Optuna choices must be plain values


def _kernel_choices(kernels: Sequence[int]) -> tuple[str, ...]:
    blocks = len(kernels)
    return tuple(sorted({_kernel_pattern(kernels), _kernel_pattern([3] * blocks), _kernel_pattern([5] * blocks)}))


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution):
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


# -- objectives -------------------------------------------------------------------------------
class Scorer:
    """The search objective for a model in training, from its validation split:
    elbo            mean reconstruction + mixture KL (the negative ELBO with unit weights: the
                    training total carries the searched weights and would reward shrinking them)
    reconstruction  mean reconstruction error
    silhouette      mean simplified silhouette (eq. 18) of mu_z under the gamma assignments
    nmi             NMI of the gamma assignments with the cache's `label` or `gz1_class`
    """

    def __init__(self, objective: str, cache: Cache):
        self.objective = objective
        self.direction = OBJECTIVES[objective]
        self.needs_mixture = objective != "reconstruction"
        validation = cache.split("validation")
        if validation.empty:
            raise InputError(f"{cache.folder}: the validation split is empty; tuning scores trials on it")
        if objective == "nmi":
            column = label_column(cache.index)
            if column is None:
                raise InputError(f"{cache.folder}: --objective nmi needs labels, but the cache index has no "
                                 f"{' or '.join(LABEL_COLUMNS)} column")
            validation = validation[validation[column].notna()]
            self.labels = validation[column].to_numpy()
        if objective in ("silhouette", "nmi"):
            self.pixels = read_rows(cache.images, validation["row"].to_numpy())

    def __call__(self, module: VaDETraining) -> float:
        if self.objective == "reconstruction":
            return module.epoch_means("validation")["reconstruction"]
        if self.objective == "elbo":
            means = module.epoch_means("validation")
            return means["reconstruction"] + means["kl_mixture"]
        was_training = module.model.training
        outputs = model_outputs(module.model.eval(), self.pixels, reconstruct=False)
        module.model.train(was_training)
        clusters = outputs["gamma"].argmax(axis=1)
        if self.objective == "silhouette":
            return float(simplified_silhouette(outputs["mu"], clusters).mean())
        return float(normalized_mutual_info_score(self.labels, clusters))


class ReportToTrial(Callback):
    """After every epoch (once the mixture exists, when the objective needs it), reports the
    objective to the Optuna trial and stops the run if the pruner rejects it; at the end of
    training, keeps the final value."""

    def __init__(self, trial: optuna.Trial, scorer: Scorer):
        self.trial, self.scorer = trial, scorer
        self.value: float | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, module: VaDETraining) -> None:
        if self.scorer.needs_mixture and not module.model.prior.initialised:
            return
        value = self.scorer(module)
        self.trial.report(value, trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {trainer.current_epoch}: {self.scorer.objective} = {value:.5g}")

    def on_train_end(self, trainer: L.Trainer, module: VaDETraining) -> None:
        self.value = self.scorer(module)


# -- the search -------------------------------------------------------------------------------
@dataclass
class TuneSummary:
    objective: str
    direction: str
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any] | None
    best_trial: str | None
    out: Path

    def line(self) -> str:
        counts = ", ".join(f"{count} {state}" for state, count in self.counts.items() if count)
        if self.best_trial is None:
            return f"{sum(self.counts.values())} trials ({counts}); none complete yet -> {self.out / 'summary.json'}"
        return (
            f"{sum(self.counts.values())} trials ({counts}); best {self.objective} {self.best_value:.5g} in "
            f"{self.best_trial} -> {self.out / 'best-config.yaml'}"
        )


def tune(data: str | Path | None, out: str | Path, base: Config | None = None, trials: int = 20,
         objective: str = "elbo", storage: str | None = None, study_name: str = "astrovader",
         timeout: float | None = None, pruner: optuna.pruners.BasePruner | None = None,
         enqueue: Sequence[dict[str, Any]] = (), progress: Callable[[int, int], None] | None = None) -> TuneSummary:
    """Run (or resume) a search in folder `out` until the study holds `trials` finished trials
    (complete, pruned or failed) or `timeout` seconds have passed; returns the summary.

    `data`: as for train_run (a cache, a catalogue, image folder or IDX files prepared once
    into out/cache, or None for simulated galaxies). `storage`: an Optuna RDB URL (default
    sqlite:///OUT/optuna.db). `pruner`: default MedianPruner(n_startup_trials=3). `enqueue`:
    parameter sets to try first, after the base config itself.
    """
    base = base or Config()
    if objective not in OBJECTIVES:
        raise InputError(f"--objective {objective}: unknown objective (choose from {', '.join(OBJECTIVES)})")
    if trials < 1:
        raise InputError(f"--trials {trials}: must be at least 1")
    if objective == "elbo" and base.train.method == "two_stage":
        raise InputError("--objective elbo: the two-stage baseline has no mixture KL in training; choose another")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, source, _ = resolve_data(data, base, out, progress=False)
    cache_dir = Path(source["cache"])
    scorer = Scorer(objective, Cache(cache_dir))
    study = _open_study(storage or f"sqlite:///{(out / 'optuna.db').resolve()}", study_name, scorer, base, cache_dir,
                        pruner or optuna.pruners.MedianPruner(n_startup_trials=3), enqueue)

    def run_trial(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, distribution) for name, distribution in search_space(base).items()}
        config = config_for(base, params).with_overrides({"train.devices": 1, "train.num_nodes": 1})
        folder = out / f"trial-{trial.number:04d}"
        trial.set_user_attr("folder", folder.name)
        reporter = ReportToTrial(trial, scorer)
        train_run(folder, config, cache_dir, progress=False, callbacks=[reporter])
        return reporter.value

    def report_progress(study: optuna.Study, _) -> None:
        if progress is not None:
            progress(len(study.get_trials(deepcopy=False, states=FINISHED)), trials)

    remaining = trials - len(study.get_trials(deepcopy=False, states=FINISHED))
    report_progress(study, None)
    if remaining > 0:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is too much
        try:
            study.optimize(
                run_trial, n_trials=remaining, timeout=timeout, catch=(TrainingError,), gc_after_trial=True,
                callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), report_progress],
            )
        finally:
            optuna.logging.set_verbosity(verbosity)
    return write_summary(study, base, out)


def _open_study(url: str, name: str, scorer: Scorer, base: Config, cache_dir: Path, pruner, enqueue) -> optuna.Study:
    settings = {"objective": scorer.objective, "base_config": base.to_dict(), "cache": str(cache_dir.resolve())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            # Heartbeats let a resumed search mark failed a trial whose process was killed (it
            # would otherwise stay "running" for ever): 3 minutes after its last heartbeat.
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
        except Exception as error:  # noqa: BLE001 - SQLAlchemy raises many kinds for a bad URL
            raise InputError(f"--storage {url}: cannot open it as an Optuna storage ({error})") from None
    study = optuna.create_study(
        storage=storage, study_name=name, direction=scorer.direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base.train.seed), pruner=pruner,
    )
    recorded = {key: study.user_attrs.get(key) for key in settings}
    if not study.trials and not any(recorded.values()):
        for key, value in settings.items():
            study.set_user_attr(key, value)
        for params in (base_params(base), *enqueue):
            study.enqueue_trial(params)
    elif recorded != settings:
        changed = next(key for key in settings if recorded[key] != settings[key])
        raise InputError(
            f"{url}: study {name!r} was started with another {changed.replace('_', ' ')}; resume it with the "
            f"same DATA, --objective, --preset and --config, or use another --out / --study"
        )
    return study


def write_summary(study: optuna.Study, base: Config, out: Path) -> TuneSummary:
    """summary.json, trials.csv and best-config.yaml from the study's current state."""
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    summary = TuneSummary(
        objective=study.user_attrs["objective"], direction=study.direction.name.lower(), counts=counts,
        best_value=best.value if best else None, best_params=best.params if best else None,
        best_trial=best.user_attrs.get("folder") if best else None, out=out,
    )
    columns = ("number", "state", "value", "params", "user_attrs", "datetime_start", "datetime_complete")
    frame = study.trials_dataframe(attrs=columns)
    write_with(out / "trials.csv", lambda path: frame.to_csv(path, index=False))
    if best is not None:
        config_for(base, best.params).to_yaml(out / "best-config.yaml")
    write_json_atomic(out / "summary.json", {
        "study": study.study_name, "objective": summary.objective, "direction": summary.direction,
        "trials": counts, "best_value": summary.best_value, "best_params": summary.best_params,
        "best_trial": summary.best_trial, "search_space": {name: repr(d) for name, d in search_space(base).items()},
    })
    return summary
