import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from astrovader.config import DataConfig
from astrovader.data.images import central_crop, decode, handle_nonfinite, preprocess, resize, scale, to_bands
from astrovader.errors import ImageError


def test_preprocess_matches_a_hand_computation():
    # 3 bands, 16x16: crop 0.5 keeps the central 8x8, gray averages the bands, area resize
    # to 4x4 averages 2x2 blocks, min-max maps to [0, 1], then uint8.
    plane = np.random.default_rng(3).uniform(0, 100, size=(16, 16))
    bands = np.stack([plane * k for k in (1, 2, 3)]).astype(np.float32)
    config = DataConfig(crop_fraction=0.5, image_size=4, color="gray", scaling="minmax")
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
    stretched = scale(np.random.default_rng(0).normal(size=(1, 16, 16)), DataConfig(scaling="asinh"))
    assert stretched.min() == 0 and stretched.max() == 1


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


def test_constant_and_blank_images_give_zeros_not_nan():
    for value in (0.0, 7.0, 255.0):
        result = preprocess(np.full((3, 20, 20), value, dtype=np.float32), DataConfig(image_size=8))
        assert result.shape == (1, 8, 8) and not result.any()


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
        decoded = decode(str(tmp_path / name))
        assert decoded.shape == (3, 12, 10), name
        np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(decode(str(tmp_path / "ext.fits"))[0], expected[0])


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
        decode(str(path))


def test_truncated_jpeg_and_broken_fits(tmp_path):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        decode(str(tmp_path / "t.jpg"))
    (tmp_path / "b.fits").write_bytes(b"SIMPLE  =                    T" + b"garbage" * 10)
    with pytest.raises(ImageError, match="FITS"):
        decode(str(tmp_path / "b.fits"))
