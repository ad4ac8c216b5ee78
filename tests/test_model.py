import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MultivariateNormal, Normal, kl_divergence

from astrovader.config import Config
from astrovader.errors import InputError, TrainingError
from astrovader.model.losses import (
    NOISE_FLOOR, aperture_weights, border_noise, kl_mixture, kl_standard_normal, reconstruction_loss,
)
from astrovader.model.mixture import MixturePrior
from astrovader.model.vade import VaDE


def test_paper_network_has_the_published_parameter_count():
    counts = VaDE(Config.from_preset("paper")).parameter_count()
    assert counts["total"] == 871_381
    assert counts["mixture"] == 492 == 12 + 2 * 20 * 12
    mirrored = VaDE(Config.from_preset("paper", model={"decoder_kernels": None})).parameter_count()
    assert mirrored["encoder"] + mirrored["decoder"] == 739_817


@pytest.mark.parametrize("preset, shape", [("paper", (1, 128, 128)), ("cpu", (1, 64, 64)), ("tiny", (1, 16, 16))])
def test_networks_map_images_to_latents_and_back(preset, shape):
    config = Config.from_preset(preset)
    model = VaDE(config)
    x = torch.rand(2, *shape)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, config.model.latent_dim)
    reconstruction = model.decode(mu)
    assert reconstruction.shape == x.shape and (reconstruction >= 0).all()


def test_mlp_backbone_and_colour_and_bce_output():
    config = Config.from_preset("tiny", model={"backbone": "mlp", "hidden": (32, 16), "reconstruction": "bce"},
                                data={"image_size": 12, "color": "rgb"})
    model = VaDE(config)
    reconstruction = model.decode(model.encode(torch.rand(3, 3, 12, 12))[0])
    assert reconstruction.shape == (3, 3, 12, 12) and ((reconstruction > 0) & (reconstruction < 1)).all()
    assert {type(layer) for layer in model.modules()} >= {torch.nn.ReLU} and not any(
        isinstance(layer, torch.nn.LeakyReLU) for layer in model.modules())
    leaky = VaDE(config.with_overrides({"model.mlp_activation": "leaky_relu"}))
    slopes = {layer.negative_slope for layer in leaky.modules() if isinstance(layer, torch.nn.LeakyReLU)}
    assert slopes == {0.01} and not any(type(layer) is torch.nn.ReLU for layer in leaky.modules())
    assert leaky.parameter_count() == model.parameter_count()


def _prior(seed=0, k=4, j=3):
    prior = MixturePrior(k, j, gamma_scale=50.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(k, generator=generator))
        prior.means.copy_(torch.randn(k, j, generator=generator) * 3)
        prior.log_variances.copy_(torch.randn(k, j, generator=generator) * 0.3)
    return prior


def _full_prior(seed=0, k=4, j=3):
    prior = MixturePrior(k, j, covariance="full")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(k, generator=generator))
        prior.means.copy_(torch.randn(k, j, generator=generator) * 3)
        prior.log_variances.copy_(torch.randn(k, j, generator=generator) * 0.3)
        prior.lower.copy_(torch.randn(k, j, j, generator=generator) * 0.5)
    return prior


@pytest.mark.parametrize("backbone", ["conv", "mlp"])
def test_the_pca_encoder_starts_at_the_whitened_principal_components_of_the_training_images(backbone):
    config = Config.from_preset("tiny", model={"backbone": backbone, "hidden": (32, 16), "encoder": "pca", "aperture": 0.25})
    model = VaDE(config)
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(300, 1, 16, 16, generator=generator) * 255).to(torch.uint8).numpy()
    model.start_encoder(images, np.arange(0, 300, 2))  # the even rows are the training rows
    training = torch.from_numpy(images[::2]).float() / 255
    mu, _ = model.encode(training)
    latent = config.model.latent_dim
    torch.testing.assert_close(mu.mean(0), torch.zeros(latent), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(mu.T), torch.eye(latent), atol=1e-3, rtol=0)
    # The map is of the aperture-weighted pixels, and stays fp32 under bf16 autocast.
    assert torch.equal(model.encoder.pixel_weights, aperture_weights((1, 16, 16), 0.25, torch.device("cpu")).sqrt())
    model.set_precision("bf16")
    assert torch.equal(model.encode(training)[0], mu)
    assert model.decode(mu).shape == training.shape


def test_the_pca_encoder_needs_an_image_per_component_and_stays_finite_on_identical_images():
    model = VaDE(Config.from_preset("tiny", model={"encoder": "pca"}))  # 4 latent dimensions
    images = np.zeros((6, 1, 16, 16), dtype=np.uint8)
    with pytest.raises(TrainingError, match="4 principal components .* 3 training images"):
        model.start_encoder(images, np.arange(3))
    images[1:, :, 8, 8] = 200  # two distinct images: most directions do not vary at all
    model.start_encoder(images, np.arange(6))
    assert torch.isfinite(model.encode(torch.from_numpy(images).float() / 255)[0]).all()


def test_full_covariance_prior_matches_torch_distributions():
    prior = _full_prior()
    tril = prior.scale_tril().detach()
    assert torch.all(torch.triu(tril, diagonal=1) == 0) and not torch.all(torch.tril(tril, diagonal=-1) == 0)
    z = torch.randn(7, 3) * 2
    expected = torch.stack([MultivariateNormal(prior.means[c], scale_tril=tril[c]).log_prob(z) for c in range(4)], 1)
    torch.testing.assert_close(prior.log_likelihoods(z), expected, rtol=1e-5, atol=1e-5)
    # Eq. 11 with full covariances = KL(gamma || pi) + sum_c gamma_c KL(N(mu, diag sigma^2) || N(mu_c, Sigma_c)).
    mu, logvar = torch.randn(7, 3), torch.randn(7, 3) * 0.5
    q = MultivariateNormal(mu, scale_tril=torch.diag_embed((0.5 * logvar).exp()))
    log_gamma = torch.log_softmax(torch.randn(7, 4), dim=1)
    gamma = log_gamma.exp()
    gaussian = torch.stack([kl_divergence(q, MultivariateNormal(prior.means[c], scale_tril=tril[c])) for c in range(4)], 1)
    categorical = kl_divergence(Categorical(probs=gamma), Categorical(probs=prior.log_weights().exp()))
    torch.testing.assert_close(kl_mixture(mu, logvar, log_gamma, prior), categorical + (gamma * gaussian).sum(1),
                               rtol=1e-5, atol=1e-5)


def test_full_prior_with_no_correlations_is_the_diagonal_prior():
    diagonal, full = _prior(), MixturePrior(4, 3, covariance="full")
    full.load_state_dict({**diagonal.state_dict(), "lower": torch.randn(4, 3, 3).triu()}, strict=True)
    z, logvar = torch.randn(6, 3) * 3, torch.randn(6, 3)
    torch.testing.assert_close(full.log_joint(z), diagonal.log_joint(z))
    log_gamma = diagonal.log_responsibilities(z)
    torch.testing.assert_close(kl_mixture(z, logvar, log_gamma, full), kl_mixture(z, logvar, log_gamma, diagonal))


def test_full_prior_takes_a_fitted_gaussian_mixture_and_samples_its_covariance():
    source = _full_prior(k=3, j=2)
    covariances = source.covariances().detach().numpy()
    prior = MixturePrior(3, 2, covariance="full")
    prior.set_from_gmm(np.array([0.2, 0.3, 0.5]), source.means.detach().numpy(), covariances)
    np.testing.assert_allclose(prior.covariances().detach().numpy(), covariances, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prior.log_weights().exp().detach().numpy(), [0.2, 0.3, 0.5], rtol=1e-6)
    _, z = prior.sample(20000, torch.Generator().manual_seed(0), torch.full((20000,), 2))
    np.testing.assert_allclose(np.cov(z.numpy().T), covariances[2], atol=0.05 * np.abs(covariances[2]).max())
    with pytest.raises(ValueError, match="diagonal prior"):
        MixturePrior(3, 2).set_from_gmm(np.full(3, 1 / 3), np.zeros((3, 2)), covariances)


def test_posterior_responsibilities_are_bayes_rule_and_keep_the_eq17_ranking():
    prior, z = _prior(), torch.randn(8, 3) * 3
    plain = MixturePrior(4, 3, responsibilities="posterior")
    plain.load_state_dict(prior.state_dict())
    torch.testing.assert_close(plain.responsibilities(z), prior.posterior(z))
    assert torch.equal(plain.responsibilities(z).argmax(1), prior.responsibilities(z).argmax(1))


def test_weights_stay_on_the_simplex():
    prior = _prior()
    with torch.no_grad():
        prior.logits.mul_(40)
    weights = prior.log_weights().exp()
    assert torch.all(weights >= 0) and torch.isclose(weights.sum(), torch.tensor(1.0))


def test_gamma_is_per_sample_and_independent_of_batch_mates():
    prior = _prior()
    z = torch.randn(9, 3) * 4
    together = prior.responsibilities(z)
    alone = torch.cat([prior.responsibilities(z[i : i + 1]) for i in range(len(z))])
    torch.testing.assert_close(together, alone, rtol=0, atol=0)
    torch.testing.assert_close(together.sum(1), torch.ones(9))
    # Eq. 17: scaled log p(c, z) spans exactly [-lambda, 0] for each sample.
    scaled = prior.scaled_log_joint(z)
    torch.testing.assert_close(scaled.max(1).values, torch.zeros(9))
    torch.testing.assert_close(scaled.min(1).values, torch.full((9,), -50.0))


def test_unscaled_posterior_is_bayes_rule():
    prior = _prior()
    z = torch.randn(5, 3)
    weights = prior.log_weights().exp()
    likelihood = torch.stack([
        Normal(prior.means[c], prior.log_variances[c].exp().sqrt()).log_prob(z).sum(-1).exp() for c in range(4)
    ], dim=1)
    expected = weights * likelihood / (weights * likelihood).sum(1, keepdim=True)
    torch.testing.assert_close(prior.posterior(z), expected, rtol=1e-4, atol=1e-6)


def test_equal_components_give_uniform_gamma_not_nan():
    prior = MixturePrior(5, 2)
    gamma = prior.responsibilities(torch.randn(4, 2))
    assert torch.isfinite(gamma).all()
    torch.testing.assert_close(gamma, torch.full((4, 5), 0.2))


def test_kl_terms_match_torch_distributions():
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3) * 0.5
    q = Normal(mu, (0.5 * logvar).exp())
    torch.testing.assert_close(kl_standard_normal(mu, logvar), kl_divergence(q, Normal(0.0, 1.0)).sum(-1))
    # Eq. 11 = KL(gamma || pi) + sum_c gamma_c KL(N(mu, sigma^2) || N(mu_c, sigma_c^2)).
    prior = _prior()
    log_gamma = torch.log_softmax(torch.randn(6, 4), dim=1)
    gamma = log_gamma.exp()
    gaussian = torch.stack([
        kl_divergence(q, Normal(prior.means[c], (0.5 * prior.log_variances[c]).exp())).sum(-1) for c in range(4)
    ], dim=1)
    expected = kl_divergence(Categorical(probs=gamma), Categorical(probs=prior.log_weights().exp())) + (gamma * gaussian).sum(1)
    torch.testing.assert_close(kl_mixture(mu, logvar, log_gamma, prior), expected, rtol=1e-5, atol=1e-5)


def test_reconstruction_is_a_per_image_sum():
    target = torch.zeros(2, 1, 4, 4)
    reconstruction = torch.full((2, 1, 4, 4), 0.5)
    torch.testing.assert_close(reconstruction_loss(reconstruction, target), torch.full((2,), 16 * 0.25))
    bce = reconstruction_loss(reconstruction, target, "bce")
    torch.testing.assert_close(bce, torch.full((2,), 16 * float(np.log(2))))


def test_gaussian_reconstruction_divides_by_each_images_border_noise():
    generator = torch.Generator().manual_seed(0)
    sigmas = torch.tensor([0.01, 0.05, 0.2])
    clean = torch.zeros(3, 1, 32, 32)
    clean[:, :, 12:20, 12:20] = 0.8  # a bright galaxy in the middle does not count as noise
    noisy = clean + 0.3 + sigmas[:, None, None, None] * torch.randn(3, 1, 32, 32, generator=generator)
    torch.testing.assert_close(border_noise(noisy), sigmas, rtol=0.12, atol=0)
    # A model that returns the clean image pays about D/2 whatever the noise: it is not paid to reproduce it.
    per_pixel = reconstruction_loss(clean + 0.3, noisy, "gaussian") / (32 * 32)
    torch.testing.assert_close(per_pixel, torch.full((3,), 0.5), rtol=0.25, atol=0)
    # A noiseless image (e.g. a zero border) is floored at the cache's rounding noise, never divided by zero.
    torch.testing.assert_close(border_noise(clean), torch.full((3,), NOISE_FLOOR))
    assert torch.isfinite(reconstruction_loss(clean, clean, "gaussian")).all()


def test_survey_noise_is_one_sigma_for_every_image_and_travels_with_the_model(tmp_path):
    """model.noise = survey: the median of the training images' border noise, the same sigma for
    every image in the loss (a noisy image is not paid less), saved and loaded with the weights."""
    from safetensors.torch import load_file, save_file

    from astrovader.model.io import load_model, save_model
    from astrovader.model.losses import survey_noise

    generator = torch.Generator().manual_seed(0)
    sigmas = torch.tensor([0.01, 0.02, 0.02, 0.03, 0.2])
    images = 0.3 + sigmas[:, None, None, None] * torch.randn(5, 1, 32, 32, generator=generator)
    assert survey_noise(images, np.arange(5)) == pytest.approx(0.02, rel=0.12)
    assert survey_noise(images, np.array([4, 0])) == pytest.approx(0.105, rel=0.12)  # only the rows given
    reconstruction = torch.full_like(images, 0.3)
    shared = reconstruction_loss(reconstruction, images, "gaussian", sigma=torch.tensor(0.02))
    torch.testing.assert_close(shared, reconstruction_loss(reconstruction, images, "mse") / (2 * 0.02**2))

    config = Config.from_preset("tiny", data={"image_size": 32}, model={"noise": "survey"})
    model = VaDE(config)
    with pytest.raises(TrainingError, match="not measured"):
        model.loss_terms(images, generator)
    model.measure_noise(images, np.arange(5))
    assert model.noise_sigma.item() == pytest.approx(0.02, rel=0.12)
    save_model(tmp_path / "run", model, config)
    assert load_model(tmp_path / "run")[0].noise_sigma.item() == model.noise_sigma.item()
    # A model saved before model.noise (no noise_sigma) loads; a damaged file is a one-line error naming it.
    weights = tmp_path / "run" / "model.safetensors"
    state = load_file(str(weights))
    save_file({name: tensor for name, tensor in state.items() if name != "noise_sigma"}, str(weights))
    assert load_model(tmp_path / "run")[0].noise_sigma.item() == 0
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"run/model.safetensors: not a readable safetensors model") as caught:
        load_model(tmp_path / "run")
    assert "\n" not in str(caught.value)
    save_model(tmp_path / "other", VaDE(config.with_overrides({"model.latent_dim": 8})), config)  # weights of another network
    with pytest.raises(InputError, match=r"other/model.safetensors: its weights do not fit the network model.json describes"):
        load_model(tmp_path / "other")
    per_image = VaDE(config.with_overrides({"model.noise": "image"}))
    per_image.measure_noise(images, np.arange(5))  # not needed: each image's own sigma
    assert per_image.noise_sigma == 0 and torch.isfinite(per_image.loss_terms(images, generator)["reconstruction"])


@pytest.mark.parametrize("kind", ["mse", "bce", "gaussian"])
def test_an_aperture_weights_the_centre_fully_and_a_star_far_out_hardly(kind):
    """model.aperture: a Gaussian weight of sigma = aperture x side, centred on the image."""
    weights = aperture_weights((3, 32, 32), 0.125, torch.device("cpu")).view(3, 32, 32)
    assert weights[:, 15:17, 15:17].min() > 0.98 and weights[:, 0, 0].max() < 1e-3
    torch.testing.assert_close(weights[0], weights[2])  # every band alike
    assert torch.equal(weights[0, 8], weights[0, 23]) and torch.equal(weights[0, :, 8], weights[0, :, 23])  # symmetric
    blank = torch.full((3, 1, 32, 32), 0.3)
    target = blank.clone()
    target[1, 0, 2:5, 2:5] = 0.9  # a field star in the corner
    target[2, 0, 15:18, 15:18] = 0.9  # a central galaxy
    # What missing each costs (the model returns the blank sky), beyond the sky's own term (BCE's entropy):
    plain, weighted = (reconstruction_loss(blank, target, kind, aperture) - reconstruction_loss(blank, blank, kind, aperture)
                       for aperture in (None, 0.125))
    assert weighted[1] < 0.01 * plain[1]  # the star hardly counts
    assert weighted[2] > 0.8 * plain[2]  # the central galaxy (almost) fully


def test_prior_sampling_follows_the_chosen_component():
    prior = _prior(k=3, j=2)
    generator = torch.Generator().manual_seed(0)
    components, z = prior.sample(4000, generator, torch.full((4000,), 1))
    assert (components == 1).all()
    torch.testing.assert_close(z.mean(0), prior.means[1].detach(), atol=0.1, rtol=0)
    torch.testing.assert_close(z.var(0), prior.log_variances[1].exp().detach(), atol=0.1, rtol=0.1)
    drawn, _ = prior.sample(6000, torch.Generator().manual_seed(1))
    frequencies = torch.bincount(drawn, minlength=3).float() / 6000
    torch.testing.assert_close(frequencies, prior.log_weights().exp().detach(), atol=0.03, rtol=0)


def test_bf16_path_keeps_the_mixture_in_fp32_and_agrees_with_fp32():
    torch.manual_seed(0)
    model = VaDE(Config.from_preset("tiny"))
    with torch.no_grad():
        model.prior.means.normal_()
    x = torch.rand(8, 1, 16, 16)
    reference = model.loss_terms(x, torch.Generator().manual_seed(0))
    model.set_precision("bf16")
    assert model.decoder.channels_last
    mu, logvar = model.encode(x)
    assert mu.dtype == logvar.dtype == torch.float32 and model.decode(mu).dtype == torch.float32
    fast = model.loss_terms(x, torch.Generator().manual_seed(0))
    for name in ("reconstruction", "kl_normal", "kl_mixture"):
        assert fast[name].dtype == torch.float32
        torch.testing.assert_close(fast[name], reference[name], rtol=0.05, atol=0.05)
    fast["reconstruction"].backward()  # gradients flow through the autocast bodies
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_precision_choice_follows_the_hardware(monkeypatch):
    from astrovader import hardware

    assert hardware.choose_precision("fp32", "cpu") == "fp32" and hardware.choose_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert hardware.choose_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.choose_precision("auto", "cpu") == "bf16"


def test_the_launcher_preloads_a_fast_allocator_or_tunes_glibc(monkeypatch):
    from astrovader import hardware

    launched = []
    monkeypatch.setattr(hardware.os, "execve", lambda program, argv, environment: launched.append((argv, environment)))
    monkeypatch.setattr(hardware.platform, "system", lambda: "Linux")
    for name in ("LD_PRELOAD", hardware.REEXEC_MARKER, "ASTROVADER_ALLOCATOR", *hardware.GLIBC_TUNING):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hardware, "find_allocator", lambda: "/usr/lib/libtcmalloc_minimal.so.4")
    hardware.reexec_with_allocator(["run", "--out", "x"])
    argv, environment = launched.pop()
    assert argv[1:] == ["-m", "astrovader", "run", "--out", "x"]
    assert environment["LD_PRELOAD"] == "/usr/lib/libtcmalloc_minimal.so.4" and environment[hardware.REEXEC_MARKER] == "1"
    monkeypatch.setattr(hardware, "find_allocator", lambda: None)  # a fresh machine: no library to preload
    hardware.reexec_with_allocator(["x"], module="benchmarks.peak")
    argv, environment = launched.pop()
    assert argv[1:] == ["-m", "benchmarks.peak", "x"] and "LD_PRELOAD" not in environment
    assert all(environment[key] == value for key, value in hardware.GLIBC_TUNING.items())
    monkeypatch.setattr(hardware.os, "environ", environment)
    assert hardware.active_allocator() == "glibc-tuned"
    hardware.reexec_with_allocator(["x"])  # re-executed already: never again
    monkeypatch.setattr(hardware.os, "environ", {"ASTROVADER_ALLOCATOR": "system"})
    hardware.reexec_with_allocator(["x"])
    assert not launched and hardware.active_allocator() == "system"
