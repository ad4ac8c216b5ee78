from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from astrovader.cli import app
from astrovader.config import Config
from astrovader.errors import AstroVaDErError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_paper_preset_holds_the_papers_numbers():
    config = Config.from_preset("paper")
    assert config.data.image_size == 128 and config.data.crop_fraction == 0.75 and config.data.color == "gray"
    assert config.model.filters == (64, 64, 16) and config.model.kernels == (3, 5, 5)
    assert config.model.latent_dim == 20 and config.model.n_components == 12
    train = config.train
    assert (train.alpha_epochs, train.gmm_batches, train.anneal_epochs, train.static_epochs, train.periods) == (100, 200, 25, 25, 5)
    assert train.total_epochs == 350
    assert train.alpha == 0.0005 and train.mixture_kl_weight == 0.3 and train.anneal_power == 3
    assert train.learning_rate == 3e-4 and train.final_learning_rate == 1e-6 and train.l2 == 0.01
    assert config.model.gamma_scale == 50
    # the paper's recipe, not the defaults': min-max pixels as they come, eq. 6, the alpha phase, eq. 17
    assert (config.data.scaling, config.data.orientation, config.model.reconstruction) == ("minmax", "none", "mse")
    assert (config.data.augment, config.model.aperture) == ("flips", None)
    assert (train.pretrain, config.model.responsibilities, config.model.covariance) == ("alpha", "eq17", "diag")


def test_fashion_mnist_backbones_differ_only_in_their_networks():
    # The benchmark compares the conv and MLP backbones: same schedule, loss, latent space and
    # pixel scaling, so a difference in scores comes from the network.
    conv, mlp = (Config.from_yaml(CONFIGS / f"fashion-mnist-{name}.yaml").to_dict() for name in ("conv", "mlp"))
    assert conv["train"] == mlp["train"] and conv["train"]["alpha_epochs"] == 20 and conv["train"]["periods"] == 2
    for key in ("reconstruction", "covariance", "responsibilities", "latent_dim", "n_components"):
        assert conv["model"][key] == mlp["model"][key]
    assert (conv["model"]["backbone"], mlp["model"]["backbone"]) == ("conv", "mlp")
    assert {key for key in conv["data"] if conv["data"][key] != mlp["data"][key]} == {"image_size", "resize_filter"}


def test_yaml_round_trip(tmp_path):
    config = Config.from_preset("tiny").with_overrides({"train.seed": 7, "data.where": "label < 3"})
    path = tmp_path / "config.yaml"
    config.to_yaml(path)
    assert Config.from_yaml(path) == config


@pytest.mark.parametrize(
    "values, field",
    [
        ({"data": {"image_size": -64}}, "data.image_size = -64"),
        ({"data": {"crop_fraction": 1.5}}, "data.crop_fraction = 1.5"),
        ({"train": {"batch_size": 0}}, "train.batch_size = 0"),
        ({"model": {"reconstruction": "l1"}}, "model.reconstruction = 'l1'"),
        ({"data": {"image_size": 60}}, "data.image_size = 60 must be divisible by 8"),
        ({"train": {"epochs": 3}}, "train.epochs"),
    ],
)
def test_invalid_values_give_one_line_naming_field_and_value(values, field):
    with pytest.raises(AstroVaDErError) as caught:
        Config.from_dict(values)
    message = str(caught.value)
    assert field in message and "\n" not in message


def test_unknown_preset_and_missing_file_are_one_line_errors(tmp_path):
    with pytest.raises(AstroVaDErError, match="preset = 'huge'"):
        Config.from_preset("huge")
    with pytest.raises(AstroVaDErError, match="file not found"):
        Config.from_yaml(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\ntrain:\n  learning_rate: -1\n")
    with pytest.raises(AstroVaDErError, match=r"bad.yaml: train.learning_rate = -1"):
        Config.from_yaml(bad)


def test_config_file_overrides_its_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"preset": "paper", "train": {"batch_size": 32}}))
    config = Config.from_yaml(path)
    assert config.train.batch_size == 32 and config.model.filters == (64, 64, 16)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    assert isinstance(Config.from_yaml(path), Config)


def test_cli_reports_bad_values_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  crop_fraction: 2\n")
    result = CliRunner().invoke(app, ["config", "--config", str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, AstroVaDErError)
    assert "data.crop_fraction = 2" in str(result.exception)


def test_every_command_has_help():
    runner = CliRunner()
    commands = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert {"prepare", "simulate", "cutouts", "config"} <= set(commands)
    for name in commands:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, name


def test_launcher_prints_one_line_and_exits_2(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  crop_fraction: 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "astrovader", "config", "--config", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.crop_fraction = 2" in lines[0] and "Traceback" not in result.stderr


def test_galaxy_configs_differ_only_in_the_measured_recipe():
    # benchmarks/README.md ("Probes") measured exactly these changes from the paper's recipe to
    # the default one (simulated NMI 0.058 -> 0.46, GZ1 0.046 -> 0.14, over 3 seeds); nothing else
    # may differ unmeasured.
    assert changed_fields("galaxies-paper-recipe", "galaxies-conv") == {
        "data.scaling": "asinh", "data.orientation": "canonical", "data.augment": "none",
        "model.responsibilities": "posterior", "model.reconstruction": "gaussian", "model.aperture": 0.1875,
        "train.pretrain": "autoencoder", "train.l2": 0.0, "train.learning_rate": 1e-3, "train.final_learning_rate": 1e-4,
        "train.gmm_batches": 300, "train.mixture_kl_weight": 10.0,
    }
    default = Config.from_yaml(CONFIGS / "galaxies-conv.yaml").to_dict()
    assert default["data"]["asinh_softening"] == 30 and default["model"]["covariance"] == "diag"
    assert default == Config.from_preset("cpu").to_dict()


def test_sdss_morphology_config_changes_only_the_measured_knobs():
    # benchmarks/README.md measured this one change on GZ1 at the preset's K = 12 (NMI 0.134 -> 0.170
    # over 3 seeds; edge-on galaxies in edge-on components 35 -> 70 %).
    assert changed_fields("galaxies-conv", "sdss-morphology") == {"data.neighbours": "mask-blended"}


def test_sdss_classes_config_changes_only_the_measured_knobs():
    # benchmarks/README.md measured these on GZ1 at K = 6 (NMI 0.166 with the mask alone, 0.173 with
    # peak pixels, 0.228 with the PCA encoder as well, 0.252 with its aperture at 8 px; 3 seeds).
    assert changed_fields("sdss-morphology", "sdss-classes") == {
        "data.scaling": "peak", "model.encoder": "pca", "model.aperture": 0.125, "model.n_components": 6,
    }


def changed_fields(base: str, other: str) -> dict:
    """The data, model and train fields of configs/<other>.yaml that differ from configs/<base>.yaml."""
    first, second = (Config.from_yaml(CONFIGS / f"{name}.yaml").to_dict() for name in (base, other))
    return {f"{section}.{key}": second[section][key] for section in ("data", "model", "train")
            for key in second[section] if second[section][key] != first[section][key]}
