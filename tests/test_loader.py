import numpy as np
import torch

from astrovader.data.loader import EpochBatches, augment, read_rows, to_float


def _images(n=50, size=8):
    return np.random.default_rng(0).integers(0, 255, (n, 1, size, size), dtype=np.uint8)


def test_epoch_order_and_flips_are_a_function_of_seed_and_epoch():
    images = _images()
    batches = EpochBatches(images, np.arange(50), batch_size=16, seed=3)
    first = [batches[i] for i in range(len(batches))]
    again = [batches[i] for i in range(len(batches))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    batches.set_epoch(1)
    assert not torch.equal(batches[0], first[0])
    assert len(batches) == 4 and [len(batches[i]) for i in range(4)] == [16, 16, 16, 2]  # partial last batch


def test_every_row_once_per_epoch_and_only_flips():
    images = _images()
    batches = EpochBatches(images, np.arange(10, 50), batch_size=7, seed=0)
    seen = torch.cat([batches[i] for i in range(len(batches))])
    assert len(seen) == 40
    originals = torch.from_numpy(images[10:50]).float() / 255
    variants = [originals, originals.flip(-1), originals.flip(-2), originals.flip(-1).flip(-2)]
    for image in seen:
        assert any(torch.equal(image, v[i]) for v in variants for i in range(40))


def test_flips_happen_in_about_half_of_the_draws():
    batch = torch.arange(16.0).view(1, 1, 4, 4).repeat(4000, 1, 1, 1)
    flipped = augment(batch, "flips", torch.Generator().manual_seed(0))
    horizontal = (flipped[:, 0, 0, 0] == 3) | (flipped[:, 0, 0, 0] == 15)
    assert 0.45 < horizontal.float().mean() < 0.55
    rotated = augment(batch, "flips+rot90", torch.Generator().manual_seed(0))
    assert len({tuple(image.flatten().tolist()) for image in rotated[:200]}) == 8  # the dihedral group
    assert torch.equal(augment(batch[:3], "none", torch.Generator()), batch[:3])


def test_rotations_turn_by_any_angle_and_keep_a_round_galaxy_round():
    y, x = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(32.0) - 15.5, indexing="ij")
    bar = torch.exp(-0.5 * (x**2 / 36 + y**2 / 1)).view(1, 1, 32, 32).repeat(64, 1, 1, 1)
    turned = augment(bar, "rotations", torch.Generator().manual_seed(0))
    weight = turned[:, 0]
    angles = 0.5 * torch.atan2(2 * (weight * x * y).sum((1, 2)), (weight * (x * x - y * y)).sum((1, 2)))
    # Angles spread over the half circle, not only the 4 of the dihedral group.
    assert len(set(torch.round(torch.rad2deg(angles) / 10).tolist())) > 10
    round_blob = torch.exp(-0.5 * (x**2 + y**2) / 9).view(1, 1, 32, 32).repeat(8, 1, 1, 1)
    torch.testing.assert_close(augment(round_blob, "rotations", torch.Generator().manual_seed(1)), round_blob,
                               atol=0.03, rtol=0)


def test_ranks_get_disjoint_shares_that_cover_the_epoch():
    images = np.arange(30, dtype=np.uint8).reshape(30, 1, 1, 1).repeat(4, 2).repeat(4, 3)
    shares = []
    for rank in range(3):
        batches = EpochBatches(images, np.arange(30), 4, seed=1, augmentation="none", rank=rank, world_size=3)
        shares.append(torch.cat([batches[i] for i in range(len(batches))])[:, 0, 0, 0])
    values = torch.cat(shares).mul(255).round().long().sort().values
    assert values.tolist() == list(range(30))


def test_read_rows_keeps_the_requested_order():
    images = _images()
    rows = np.array([7, 2, 40, 2])
    np.testing.assert_array_equal(read_rows(images, rows), images[rows])


def test_to_float_scales_uint8_arrays_and_tensors_alike():
    images = _images()
    expected = torch.from_numpy(images.astype(np.float32) / 255)
    for given in (images, torch.from_numpy(images)):
        converted = to_float(given)
        assert converted.dtype == torch.float32 and torch.allclose(converted, expected)
    for given in (expected.numpy(), expected, expected.double()):  # floats are taken as they are
        assert torch.equal(to_float(given), expected)
    tensor = torch.from_numpy(images)
    to_float(tensor)
    assert tensor.dtype == torch.uint8 and np.array_equal(tensor.numpy(), images)  # the input is left alone
