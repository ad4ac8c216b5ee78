import math

import pytest

from astrovader.config import Config
from astrovader.train.schedule import gmm_init_epoch, learning_rate_at, phase_at

PAPER = Config.from_preset("paper").train


def test_alpha_phase_is_the_first_100_epochs():
    for epoch in (0, 50, 99):
        phase = phase_at(epoch, PAPER)
        assert (phase.name, phase.period, phase.kl_normal_weight, phase.kl_mixture_weight) == ("alpha", 0, 0.0005, 0.0)
    assert gmm_init_epoch(PAPER) == 100


@pytest.mark.parametrize("period", range(1, 6))
def test_annealing_then_static_in_each_of_five_periods(period):
    start = 100 + (period - 1) * 50
    for offset in range(25):
        phase = phase_at(start + offset, PAPER)
        beta = (offset + 1) / 25
        assert phase.name == "anneal" and phase.period == period and phase.kl_normal_weight == 0
        assert math.isclose(phase.kl_mixture_weight, 0.3 * (beta**3 + 0.0005))
    for offset in range(25, 50):
        phase = phase_at(start + offset, PAPER)
        assert (phase.name, phase.period, phase.kl_mixture_weight) == ("static", period, 0.3)


def test_named_points():
    assert math.isclose(phase_at(100, PAPER).kl_mixture_weight, 0.3 * ((1 / 25) ** 3 + 0.0005))
    assert math.isclose(phase_at(124, PAPER).kl_mixture_weight, 0.3 * 1.0005)
    assert phase_at(125, PAPER).name == "static" and phase_at(150, PAPER).name == "anneal"
    assert phase_at(349, PAPER).name == "static" and phase_at(349, PAPER).period == 5
    with pytest.raises(ValueError):
        phase_at(350, PAPER)


def test_learning_rate_decays_exponentially_every_five_epochs_to_1e6():
    assert learning_rate_at(0, PAPER) == 3e-4 == learning_rate_at(4, PAPER)
    assert math.isclose(learning_rate_at(349, PAPER), 1e-6)
    ratios = [learning_rate_at(e + 5, PAPER) / learning_rate_at(e, PAPER) for e in range(0, 340, 5)]
    assert all(math.isclose(r, ratios[0]) for r in ratios) and ratios[0] < 1
    smooth = Config.from_preset("cpu").train
    assert math.isclose(learning_rate_at(smooth.total_epochs - 1, smooth), smooth.final_learning_rate)
    assert learning_rate_at(1, smooth) < learning_rate_at(0, smooth)


def test_two_stage_baseline_is_a_plain_autoencoder_throughout():
    train = PAPER.model_copy(update={"method": "two_stage"})
    assert gmm_init_epoch(train) is None
    assert {phase_at(e, train).name for e in range(350)} == {"autoencoder"}
    assert all(phase_at(e, train).kl_mixture_weight == 0 == phase_at(e, train).kl_normal_weight for e in range(350))


def test_cpu_preset_scales_the_paper_schedule_down():
    cpu = Config.from_preset("cpu").train
    assert cpu.total_epochs < PAPER.total_epochs
    assert cpu.alpha_epochs / cpu.total_epochs == pytest.approx(PAPER.alpha_epochs / PAPER.total_epochs, abs=0.1)
