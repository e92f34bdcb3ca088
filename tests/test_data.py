"""Paired datasets: synthetic, held-out, ZRR layout, DNG + JPEG folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobileisp import data, synth
from mobileisp.errors import DatasetError, ImageSizeError
from mobileisp.metadata import METADATA_FIELDS


def assert_sample(sample: dict, crop: int) -> None:
    assert sample["raw"].shape == (4, crop // 2, crop // 2) and sample["raw"].dtype == torch.float32
    assert sample["srgb"].shape == (3, crop, crop) and sample["srgb"].dtype == torch.float32
    for key in ("raw", "srgb"):
        assert 0.0 <= float(sample[key].min()) and float(sample[key].max()) <= 1.0


# ---------------------------------------------------------------------------------------------- synthetic


def test_synthetic_sample_format_and_collate():
    ds = data.SyntheticRawDataset(4, crop=32, seed=0)
    sample = ds[0]
    assert_sample(sample, 32)
    for field, shape in METADATA_FIELDS.items():
        assert sample[field].shape == shape and sample[field].dtype == torch.float32, field
    assert sample["white_balance"][1] == 1.0 and 1.9 <= float(sample["white_balance"][0]) <= 2.4
    assert sample["shot_noise"].shape == () and 1e-4 <= float(sample["shot_noise"]) <= 1.2e-2
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["raw"].shape == (4, 4, 16, 16) and batch["color_matrix"].shape == (4, 3, 3)
    assert batch["iso"].shape == (4, 1) and batch["read_noise"].shape == (4,)


def test_synthetic_is_deterministic_per_seed_and_index():
    a = data.SyntheticRawDataset(8, crop=32, seed=3)
    b = data.SyntheticRawDataset(8, crop=32, seed=3)
    c = data.SyntheticRawDataset(8, crop=32, seed=4)
    for i in (0, 5):
        assert torch.equal(a[i]["raw"], b[i]["raw"]) and torch.equal(a[i]["srgb"], b[i]["srgb"])
        assert not torch.equal(a[i]["raw"], c[i]["raw"])
    assert not torch.equal(a[0]["srgb"], a[1]["srgb"])
    assert torch.equal(a[-1]["raw"], a[7]["raw"])
    with pytest.raises(IndexError):
        a[8]


def test_synthetic_uses_both_sources_and_natural_only_training_photos(monkeypatch):
    calls = []
    real = synth.natural_images
    monkeypatch.setattr(synth, "natural_images", lambda split="all": calls.append(split) or real(split))
    ds = data.SyntheticRawDataset(40, crop=32, seed=0)
    for i in range(len(ds)):
        ds[i]
    assert set(calls) == {"train"} and 8 < len(calls) < 32  # about half natural, half dead leaves
    natural = data.SyntheticRawDataset(3, crop=64, seed=0, sources=("natural",))
    assert_sample(natural[0], 64)


def test_synthetic_bad_arguments():
    with pytest.raises(ImageSizeError, match="even"):
        data.SyntheticRawDataset(4, crop=33)
    with pytest.raises(DatasetError, match="sources"):
        data.SyntheticRawDataset(4, crop=32, sources=("flickr",))
    with pytest.raises(DatasetError, match="split"):
        data.SyntheticRawDataset(4, crop=32, split="test")
    with pytest.raises(DatasetError, match="length"):
        data.SyntheticRawDataset(0, crop=32)


def test_bayer_phase_survives_rotations_and_flips(monkeypatch):
    """Left half red, right half blue: wherever the target is red the R plane must dominate, under every
    rot90/flip the dataset draws (augmenting the mosaic instead of the sRGB would swap planes)."""

    def two_colour(height, width, rng):
        image = np.zeros((height, width, 3), np.float32)
        image[:, : width // 2, 0] = 0.9
        image[:, width // 2 :, 2] = 0.9
        return image

    monkeypatch.setattr(synth, "dead_leaves", two_colour)
    ds = data.SyntheticRawDataset(12, crop=32, seed=0, sources=("deadleaves",))
    layouts = set()
    for i in range(len(ds)):
        s = ds[i]
        target_red = (s["srgb"][0, ::2, ::2] > 0.5).numpy()
        layouts.add(target_red.tobytes())
        r, b = s["raw"][0].numpy(), s["raw"][3].numpy()
        assert (r[target_red] > b[target_red]).mean() > 0.95 and (b[~target_red] > r[~target_red]).mean() > 0.95
    assert len(layouts) == 4  # the halves ended up left, right, top and bottom


# ---------------------------------------------------------------------------------------------- held-out


def test_heldout_set_definition():
    samples = data.heldout_set()
    assert len(samples) == 16
    names = [s["name"] for s in samples]
    assert names[1::2] == [f"deadleaves-1234-{i}" for i in range(1, 16, 2)]
    assert [n.split("@")[0] for n in names[0::2]] == ["chelsea", "coffee"] * 4
    photos = dict(synth.natural_images("heldout"))
    for s in samples:
        assert_sample(s, 128)
        assert set(METADATA_FIELDS) <= set(s)
        if "@" in s["name"]:
            photo, yx = s["name"].split("@")
            y, x = map(int, yx.split(","))
            assert y % 2 == 0 and x % 2 == 0
            expected = photos[photo][y : y + 128, x : x + 128].transpose(2, 0, 1)
            assert torch.equal(s["srgb"], torch.from_numpy(np.ascontiguousarray(expected)))
    again = data.heldout_set()
    assert all(torch.equal(a["raw"], b["raw"]) and a["name"] == b["name"] for a, b in zip(samples, again))
    other = data.heldout_set(n=4, size=64, seed=1)
    assert len(other) == 4 and other[0]["raw"].shape == (4, 32, 32) and other[1]["name"] == "deadleaves-1-1"
    with pytest.raises(ImageSizeError):
        data.heldout_set(n=2, size=512)


def test_heldout_disjoint_from_training():
    assert not set(synth.TRAIN_NATURAL) & set(synth.HELDOUT_NATURAL)
    held = [s["srgb"] for s in data.heldout_set(n=8, size=64, seed=0)[1::2]]
    train = data.SyntheticRawDataset(16, crop=64, seed=0, sources=("deadleaves",))
    for i in range(len(train)):
        target = train[i]["srgb"]
        assert all(not torch.equal(target, h) for h in held)


# ---------------------------------------------------------------------------------------------- ZRR


def make_zrr(root: Path, split: str = "train", count: int = 2, size: int = 16) -> None:
    """Bayer PNGs whose 2x2 cells hold [[R, G1], [G2, B]] = known levels, and matching JPEG targets."""
    (root / split / "huawei_raw").mkdir(parents=True)
    (root / split / "canon").mkdir(parents=True)
    for i in range(count):
        mosaic = np.zeros((size, size), np.uint16)
        for (dy, dx), level in zip([(0, 0), (0, 1), (1, 0), (1, 1)], (0.8, 0.4, 0.3, 0.1)):
            mosaic[dy::2, dx::2] = round(63 + level * 957) + i
        Image.fromarray(mosaic).save(root / split / "huawei_raw" / f"{i}.png")
        Image.fromarray(np.full((size, size, 3), 40 * i + 30, np.uint8)).save(root / split / "canon" / f"{i}.jpg")


def test_zrr_packing_and_normalisation(tmp_path):
    make_zrr(tmp_path, count=11)
    ds = data.ZurichRawToRgb(tmp_path)
    assert len(ds) == 11 and ds.pairs[2][0].name == "2.png" and ds.pairs[10][0].name == "10.png"
    s = ds[0]
    assert_sample(s, 16)
    assert s["name"] == "0" and not set(METADATA_FIELDS) & set(s)
    np.testing.assert_allclose(s["raw"].mean(dim=(1, 2)).numpy(), [0.8, 0.4, 0.3, 0.1], atol=1e-3)
    assert float(s["srgb"].mean()) == pytest.approx(30 / 255, abs=2 / 255)
    # black level 63 is subtracted and values below it clip at 0, above 1020 at 1
    assert data.pack_zrr(np.array([[0, 63], [1020, 1023]], np.uint16)).ravel().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_zrr_crops_and_split_folder(tmp_path):
    make_zrr(tmp_path, "test", count=2, size=32)
    test = data.ZurichRawToRgb(tmp_path, split="test", crop=8)
    s = test[1]
    assert_sample(s, 8)
    assert torch.equal(s["raw"], data.ZurichRawToRgb(tmp_path / "test", crop=8)[1]["raw"])
    with pytest.raises(ImageSizeError, match="larger"):
        data.ZurichRawToRgb(tmp_path, split="test", crop=64)[0]
    with pytest.raises(ImageSizeError, match="even"):
        data.ZurichRawToRgb(tmp_path, split="test", crop=7)


def test_zrr_bad_folders(tmp_path):
    with pytest.raises(DatasetError, match="Zurich"):
        data.ZurichRawToRgb(tmp_path)
    make_zrr(tmp_path, count=2)
    (tmp_path / "train" / "canon" / "1.jpg").unlink()
    with pytest.raises(DatasetError, match="1.png.*no matching image"):
        data.ZurichRawToRgb(tmp_path)
    (tmp_path / "train" / "huawei_raw" / "1.png").unlink()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / "huawei_raw" / "0.png")
    with pytest.raises(DatasetError, match="single-channel"):
        data.ZurichRawToRgb(tmp_path)[0]
    (tmp_path / "train" / "huawei_raw" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read"):
        data.ZurichRawToRgb(tmp_path)[0]


# ---------------------------------------------------------------------------------------------- DNG + JPEG


def write_pair(folder: Path, stem: str, scene: np.ndarray, jpeg_ext: str = ".jpg", jpeg: np.ndarray | None = None):
    """A DNG of the unprocessed ``scene`` (RGGB, 12-bit with black 64) and the scene as JPEG."""
    from mobileisp.dng import mosaic_from_packed, write_dng

    packed, params = synth.unprocess(scene, np.random.default_rng(0), noise=False)
    mosaic = mosaic_from_packed(packed, "RGGB", 64, 4095)
    write_dng(folder / f"{stem}.dng", mosaic, cfa="RGGB", black_level=64, white_level=4095, metadata=params.metadata())
    rgb = scene if jpeg is None else jpeg
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(folder / f"{stem}{jpeg_ext}", quality=100, subsampling=0)
    return packed, params


def test_raw_jpeg_pairs_read_dng_and_metadata(tmp_path):
    scene = synth.dead_leaves(32, 48, np.random.default_rng(0))
    packed, params = write_pair(tmp_path, "a", scene)
    write_pair(tmp_path, "b", scene[::-1].copy(), jpeg_ext=".JPEG")
    ds = data.RawJpegPairs(tmp_path)
    assert len(ds) == 2 and ds.pairs[1][1].name == "b.JPEG"
    s = ds[0]
    assert s["raw"].shape == (4, 16, 24) and s["srgb"].shape == (3, 32, 48) and s["name"] == "a"
    np.testing.assert_allclose(s["raw"].numpy(), packed, atol=2 / (4095 - 64))
    assert np.abs(s["srgb"].numpy().transpose(1, 2, 0) - scene).mean() < 0.01
    assert float(s["iso"]) == pytest.approx(params.iso, rel=1e-3)
    np.testing.assert_allclose(s["white_balance"].numpy(), [params.red_gain, 1, params.blue_gain], rtol=1e-3)
    cropped = data.RawJpegPairs(tmp_path, crop=16, seed=1)[0]
    assert cropped["raw"].shape == (4, 8, 8) and cropped["srgb"].shape == (3, 16, 16)


def test_raw_jpeg_pairs_fix_jpeg_geometry(tmp_path):
    scene = synth.dead_leaves(128, 192, np.random.default_rng(1))
    bigger = np.pad(scene, ((1, 1), (1, 1), (0, 0)), mode="edge")  # 1-2 % larger: centre-cropped
    write_pair(tmp_path, "big", scene, jpeg=bigger)
    half = scene[::2, ::2]  # same aspect at half size: resized
    write_pair(tmp_path, "half", scene, jpeg=half)
    for k in (1, 2, 3):  # phone stored rotated pixels: turned back
        write_pair(tmp_path, f"turned{k}", scene, jpeg=np.ascontiguousarray(np.rot90(scene, k)))
    ds = data.RawJpegPairs(tmp_path)
    assert len(ds) == 5
    for i in range(len(ds)):
        s = ds[i]
        assert s["srgb"].shape == (3, 128, 192), s["name"]
        err = np.abs(s["srgb"].numpy().transpose(1, 2, 0) - scene).mean()
        assert err < (0.08 if s["name"] == "half" else 0.01), (s["name"], err)
    write_pair(tmp_path, "square", scene, jpeg=scene[:, :128])
    ds = data.RawJpegPairs(tmp_path)
    with pytest.raises(DatasetError, match="square.jpg.*do not match"):
        ds[[dng.stem for dng, _ in ds.pairs].index("square")]


def test_raw_jpeg_pairs_bad_folders(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        data.RawJpegPairs(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no .dng"):
        data.RawJpegPairs(tmp_path)
    write_pair(tmp_path, "a", synth.dead_leaves(32, 32, np.random.default_rng(0)))
    (tmp_path / "a.jpg").rename(tmp_path / "a.bmp")
    with pytest.raises(DatasetError, match="a.dng: no image partner"):
        data.RawJpegPairs(tmp_path)


def test_open_dataset_specs(tmp_path):
    synthetic = data.open_dataset("synthetic", crop=32, seed=2, length=5)
    assert isinstance(synthetic, data.SyntheticRawDataset) and len(synthetic) == 5 and synthetic.crop == 32
    make_zrr(tmp_path / "zrr", "test")
    assert isinstance(data.open_dataset(f"zrr:{tmp_path / 'zrr'}", split="test"), data.ZurichRawToRgb)
    write_pair(tmp_path, "a", synth.dead_leaves(32, 32, np.random.default_rng(0)))
    assert len(data.open_dataset(f"pairs:{tmp_path}")) == 1
    for bad in ("flickr", "zrr", "pairs:", "synthetic:x"):
        with pytest.raises(DatasetError, match="accepted forms: 'synthetic', 'zrr:PATH' or 'pairs:PATH'"):
            data.open_dataset(bad)


def test_deadleaves_bank_is_deterministic_and_varied():
    ds = data.SyntheticRawDataset(64, crop=32, seed=3, sources=("deadleaves",), deadleaves_bank=4)
    again = data.SyntheticRawDataset(64, crop=32, seed=3, sources=("deadleaves",), deadleaves_bank=4)
    first = [ds[i]["srgb"] for i in range(12)]
    assert all(torch.equal(a, again[i]["srgb"]) for i, a in enumerate(first))
    assert len(ds._bank) <= 4  # scenes are reused...
    assert len({tuple(x.flatten()[:64].tolist()) for x in first}) == 12  # ...but every crop differs
    assert first[0].shape == (3, 32, 32) and ds[0]["raw"].shape == (4, 16, 16)
