import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from astrovader.config import DataConfig
from astrovader.data.images import (
    central_crop, flip_to_light, handle_nonfinite, major_axis_angle, mask_neighbours, preprocess, read_image, resize, rotate_to_major_axis, scale,
    sky_and_noise, to_bands,
)
from astrovader.errors import ImageError


def test_preprocess_matches_a_hand_computation():
    # 3 bands, 16x16: crop 0.5 keeps the central 8x8, gray averages the bands, area resize
    # to 4x4 averages 2x2 blocks, min-max maps to [0, 1], then uint8.
    plane = np.random.default_rng(3).uniform(0, 100, size=(16, 16))
    bands = np.stack([plane * k for k in (1, 2, 3)]).astype(np.float32)
    config = DataConfig(crop_fraction=0.5, image_size=4, color="gray", scaling="minmax", orientation="none")
    gray = plane[4:12, 4:12] * 2  # mean of 1x, 2x, 3x
    blocks = gray.reshape(4, 2, 4, 2).mean(axis=(1, 3))
    expected = np.rint((blocks - blocks.min()) / (blocks.max() - blocks.min()) * 255).astype(np.uint8)
    result = preprocess(bands, config)
    assert result.shape == (1, 4, 4) and result.dtype == np.uint8
    np.testing.assert_array_equal(result[0], expected)


def test_each_step_by_hand():
    image = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    cropped = central_crop(image, DataConfig(crop_pixels=4))
    np.testing.assert_array_equal(cropped, image[:, 1:5, 1:5])
    np.testing.assert_allclose(to_bands(cropped, "gray")[0], cropped.mean(axis=0))
    np.testing.assert_allclose(resize(cropped[:1], 2, "area")[0], cropped[0].reshape(2, 2, 2, 2).mean(axis=(1, 3)))
    fixed = scale(np.array([[[0.0, 127.5, 510.0]]]), DataConfig(scaling="fixed"))
    np.testing.assert_allclose(fixed, [[[0.0, 0.5, 1.0]]])


def _galaxy(sky=100.0, noise=5.0, peak=1000.0, angle=0.0, size=64, seed=0, companion=False):
    """An elongated Gaussian galaxy (major axis at `angle` degrees from +x) on a noisy sky."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    t = np.radians(angle)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    light = peak * np.exp(-0.5 * (u**2 / (size / 8) ** 2 + v**2 / (size / 30) ** 2))
    if companion:  # a bright star near the edge
        light += 3 * peak * np.exp(-0.5 * ((x - size * 0.35) ** 2 + (y + size * 0.3) ** 2) / 1.5**2)
    noisy = light + sky + np.random.default_rng(seed).normal(0, noise, (size, size))
    return noisy.astype(np.float32)[None]


def test_sky_and_noise_come_from_a_clipped_border():
    sky, sigma = sky_and_noise(_galaxy(sky=250.0, noise=8.0, companion=True))
    assert abs(sky[0] - 250.0) < 1.0 and abs(sigma[0] - 8.0) < 0.8


@pytest.mark.parametrize("scaling", ["peak", "asinh"])
def test_sky_aware_scalings_put_the_sky_at_sky_level_and_the_peak_at_one(scaling):
    config = DataConfig(scaling=scaling, sky_level=0.2)
    faint, bright = (scale(_galaxy(sky=sky, peak=peak), config) for sky, peak in ((50.0, 200.0), (900.0, 5000.0)))
    for image in (faint, bright):
        corner = image[0, :8, :8]
        assert abs(np.median(corner) - 0.2) < 0.02 and abs(image.max() - 1.0) < 0.1
    if scaling == "peak":  # a brighter galaxy on a brighter sky looks the same, up to its noise
        assert abs(np.median(faint[0, 24:40, 24:40]) - np.median(bright[0, 24:40, 24:40])) < 0.05
    # Nothing above the sky: the sky alone, never NaN.
    assert np.all(scale(np.full((1, 16, 16), 7.0, dtype=np.float32), config) == 0.2)


def test_asinh_lifts_the_faint_outskirts_above_the_linear_peak_scaling():
    image = _galaxy(noise=2.0, peak=5000.0)
    linear, stretched = scale(image, DataConfig(scaling="peak")), scale(image, DataConfig(scaling="asinh"))
    outskirt = (0, 32, 32 + 14)  # about 1.75 major-axis sigmas out
    assert stretched[outskirt] > linear[outskirt] + 0.1


@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0, 120.0, 160.0])
def test_major_axis_is_found_and_turned_horizontal(angle):
    image = _galaxy(angle=angle, companion=True)
    measured = major_axis_angle(image)
    assert abs((measured - angle + 90) % 180 - 90) < 2.0
    turned = rotate_to_major_axis(image)
    assert turned.shape == image.shape and abs(major_axis_angle(turned)) < 2.0
    # Horizontal now: more light along the middle row than along the middle column.
    middle = turned[0] - np.median(turned)
    assert middle[32, :].sum() > 2 * middle[:, 32].sum()
    oriented = preprocess(image, DataConfig(orientation="major-axis", scaling="peak", image_size=32, crop_fraction=1.0))
    assert oriented.shape == (1, 32, 32) and oriented[0, 16, :].sum() > oriented[0, :, 16].sum()


def test_canonical_orientation_puts_a_companion_on_one_side_whatever_side_it_was_on():
    """After the turn to the major axis a galaxy may still face four ways (flips): a companion in
    any quadrant ends up towards the last column and row, so the four pictures become one."""
    image = np.ascontiguousarray(_galaxy(companion=True)[..., ::-1])  # the star left of and above the galaxy
    canonical = flip_to_light(image)
    star = np.unravel_index(np.argmax(canonical[0]), canonical.shape[1:])
    assert star[0] > 32 and star[1] > 32
    for flipped in (image[..., ::-1], image[..., ::-1, :], image[..., ::-1, ::-1]):
        assert np.array_equal(flip_to_light(flipped), canonical)
    settings = dict(scaling="peak", image_size=32, crop_fraction=1.0)
    pictures = [preprocess(np.ascontiguousarray(view), DataConfig(orientation="canonical", **settings))
                for view in (image, image[..., ::-1], image[..., ::-1, :])]
    assert all(np.array_equal(picture, pictures[0]) for picture in pictures)


def _blob(size, row, column, sigma, peak):
    y, x = np.mgrid[:size, :size]
    return (peak * np.exp(-0.5 * ((y - row) ** 2 + (x - column) ** 2) / sigma**2)).astype(np.float32)[None]


def test_masking_replaces_neighbours_by_sky_noise_and_keeps_the_galaxy():
    """A detached star goes with `mask`; a neighbour overlapping the galaxy's light goes only with
    deblending; the galaxy's own pixels are never touched, and the fill is the border's sky noise."""
    image = _galaxy(noise=5.0) + _blob(64, 8, 10, 1.5, 3000.0) + _blob(64, 32, 46, 1.5, 1500.0)
    galaxy_core = (slice(None), slice(28, 37), slice(24, 37))
    detached, blended = (slice(None), slice(4, 13), slice(6, 15)), (slice(None), slice(30, 35), slice(44, 49))
    masked = mask_neighbours(image)
    assert masked[detached].max() < 100.0 + 6 * 5.0 and abs(masked[detached].std() - 5.0) < 2.0
    assert masked[blended].max() > 1000.0  # joined to the galaxy above 2 sigma: kept
    deblended = mask_neighbours(image, deblend=True)
    assert deblended[blended].max() < 100.0 + 6 * 5.0 and deblended[detached].max() < 100.0 + 6 * 5.0
    for result in (masked, deblended):
        assert np.array_equal(result[galaxy_core], image[galaxy_core])
    assert np.array_equal(mask_neighbours(image, deblend=True), deblended)  # the same fill every time
    lone = _galaxy(noise=5.0)
    alone = mask_neighbours(lone, deblend=True)  # at most noise peaks are redrawn, as noise
    assert np.array_equal(alone[galaxy_core], lone[galaxy_core]) and abs(alone[0, :12].std() - 5.0) < 0.5
    offset = _blob(64, 10, 10, 3.0, 1000.0) + np.random.default_rng(1).normal(100.0, 5.0, (1, 64, 64)).astype(np.float32)
    assert np.array_equal(mask_neighbours(offset), offset)  # no galaxy at the centre: left alone
    settings = dict(scaling="peak", image_size=32, crop_fraction=1.0, orientation="none")
    assert not np.array_equal(preprocess(image, DataConfig(neighbours="mask", **settings)),
                              preprocess(image, DataConfig(**settings)))


def test_crop_larger_than_image_and_wrong_bands_are_rejected():
    with pytest.raises(ImageError, match="smaller than the 192 px crop"):
        central_crop(np.zeros((1, 100, 100)), DataConfig(crop_pixels=192))
    with pytest.raises(ImageError, match="has 1 band"):
        to_bands(np.zeros((1, 8, 8)), "rgb")


def test_nonfinite_policies():
    image = np.ones((1, 4, 4), dtype=np.float32)
    image[0, 0, 0] = np.nan
    image[0, 1, 1] = np.inf
    assert handle_nonfinite(image, "zero")[0, 0, 0] == 0
    assert handle_nonfinite(image, "median")[0, 1, 1] == 1
    with pytest.raises(ImageError, match="2 NaN or infinite"):
        handle_nonfinite(image, "reject")
    with pytest.raises(ImageError, match="all pixels"):
        handle_nonfinite(np.full((1, 3, 3), np.nan), "zero")


@pytest.mark.parametrize("scaling, expected", [("minmax", 0), ("asinh", 51), ("peak", 51)])
def test_constant_and_blank_images_give_the_sky_not_nan(scaling, expected):
    # nothing above the sky: min-max gives zeros, the sky-aware scalings the sky at sky_level (0.2 x 255)
    for value in (0.0, 7.0, 255.0):
        result = preprocess(np.full((3, 20, 20), value, dtype=np.float32), DataConfig(image_size=8, scaling=scaling))
        assert result.shape == (1, 8, 8) and (result == expected).all()


def test_decoders_agree_on_the_same_pixels(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.save(tmp_path / "a.npy", rgb)
    fits.PrimaryHDU(np.moveaxis(rgb, -1, 0).astype(np.float32)).writeto(tmp_path / "a.fits")
    empty = fits.PrimaryHDU()
    fits.HDUList([empty, fits.ImageHDU(rgb[..., 0].astype(np.float32))]).writeto(tmp_path / "ext.fits")
    expected = np.moveaxis(rgb, -1, 0).astype(np.float32)
    for name in ("a.png", "a.npy", "a.fits"):
        decoded = read_image(str(tmp_path / name))
        assert decoded.shape == (3, 12, 10), name
        np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(read_image(str(tmp_path / "ext.fits"))[0], expected[0])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"this is not a picture"), "not an image"),
        (lambda p: None, "missing file"),
    ],
)
def test_bad_files_raise_with_reason(tmp_path, make, reason):
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageError, match=reason):
        read_image(str(path))


def test_truncated_jpeg_and_broken_fits(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        read_image(str(tmp_path / "t.jpg"))
    (tmp_path / "b.fits").write_bytes(b"SIMPLE  =                    T" + b"garbage" * 10)
    with pytest.raises(ImageError, match="FITS"):
        read_image(str(tmp_path / "b.fits"))
