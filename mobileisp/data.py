"""Paired (RAW, sRGB) datasets: synthetic unprocessed scenes, the held-out set, ZRR and phone DNG+JPEG folders.

Every dataset returns dicts with

- ``"raw"``: packed RGGB (4, c/2, c/2) float32 tensor in [0, 1] (R, Gr, Gb, B; black-subtracted, normalised);
- ``"srgb"``: the target, (3, c, c) float32 tensor in [0, 1];
- camera-metadata tensors named and shaped as :data:`mobileisp.metadata.METADATA_FIELDS`
  (``"white_balance"`` (3,), ``"color_matrix"`` (3, 3), ``"iso"`` (1,), ...), only where known;
- synthetic samples add ``"shot_noise"`` and ``"read_noise"`` (0-d float32 tensors) and ``"raw_clean"``, the
  packed RAW before noise (the target of an inverse, sRGB -> RAW, network); real and held-out samples a
  ``"name"`` string.

The default ``torch.utils.data`` collate function batches them.

Held-out set (:func:`heldout_set`, defaults n=16, size=128, seed=1234): sample ``i`` uses the generator
``np.random.default_rng([HELDOUT_TAG, seed, i])``. Even ``i``: a ``size`` x ``size`` crop at a random even
offset of the held-out photo ``HELDOUT_NATURAL[(i // 2) % 2]`` (``chelsea``, ``coffee``; never used for
training). Odd ``i``: ``dead_leaves(size, size, rng)``. Both are then unprocessed with noise by the same
generator. Training samples use ``np.random.default_rng([TRAIN_TAG, seed, index])``, so the dead-leaves
streams of the two sets never coincide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mobileisp import synth
from mobileisp.errors import DatasetError, ImageSizeError, MobileISPError
from mobileisp.metadata import METADATA_FIELDS, CameraMetadata

#: Generator tags that keep training and held-out random streams apart (ASCII "TRAN" and "HELD").
TRAIN_TAG = 0x5452414E
HELDOUT_TAG = 0x48454C44
BANK_TAG = 0x42414E4B  # "BANK": the dead-leaves scene bank has its own random stream
SOURCES = ("natural", "deadleaves")
#: Zurich RAW-to-RGB (Huawei P20, 10-bit) black and white levels; the LiteISPNet convention.
ZRR_BLACK_LEVEL = 63
ZRR_WHITE_LEVEL = 1020
#: Relative size mismatch between a RAW and its JPEG that is fixed by a centre crop rather than an error.
_CROP_TOLERANCE = 0.02


def sample_dict(
    raw: np.ndarray, srgb_hwc: np.ndarray, metadata: CameraMetadata | None = None, **extra: Any
) -> dict[str, Any]:
    """Assemble one sample: packed (4, h, w) RAW, (H, W, 3) sRGB, the known metadata fields, ``extra``."""
    out: dict[str, Any] = {
        "raw": torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32)),
        "srgb": torch.from_numpy(np.ascontiguousarray(np.asarray(srgb_hwc, dtype=np.float32).transpose(2, 0, 1))),
    }
    if metadata is not None:
        for field, shape in METADATA_FIELDS.items():
            value = getattr(metadata, field)
            if value is not None:
                out[field] = torch.tensor(np.asarray(value, dtype=np.float32).reshape(shape))
    for key, value in extra.items():
        out[key] = torch.tensor(value, dtype=torch.float32) if isinstance(value, float) else value
    return out


def _unprocessed_sample(scene: np.ndarray, rng: np.random.Generator, **extra: Any) -> dict[str, Any]:
    # synth.unprocess(scene, rng, noise=True) step by step, to keep the clean RAW too (same random stream)
    params = synth.random_params(rng)
    clean = synth.mosaic(synth.unprocess_linear(scene, params))
    noisy = synth.add_noise(clean, params.shot_noise, params.read_noise, rng).astype(np.float32)
    return sample_dict(
        noisy, np.clip(scene, 0.0, 1.0), params.metadata(),
        shot_noise=float(params.shot_noise), read_noise=float(params.read_noise),
        raw_clean=torch.from_numpy(clean.astype(np.float32)), **extra,
    )


def _check_crop(crop: int, what: str) -> int:
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 2 or crop % 2:
        raise ImageSizeError(f"{what}: crop must be an even number of pixels >= 2, got {crop!r}")
    return int(crop)


def _natural_crop(image: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop, downscaled by a random factor in [1, 2] where the photo is large enough.

    Downscaling averages away JPEG artefacts and demosaicing of the source (as Brooks et al. advise);
    a photo smaller than ``crop`` is upscaled just enough.
    """
    from skimage.transform import resize

    h, w = image.shape[:2]
    need = crop / min(h, w)  # the scale at which the short side just fits
    scale = rng.uniform(max(need, 0.5), 1.0) if need <= 1.0 else need
    region = min(int(round(crop / scale)), h, w)
    y = int(rng.integers(0, h - region + 1))
    x = int(rng.integers(0, w - region + 1))
    patch = image[y : y + region, x : x + region]
    if region != crop:
        patch = resize(patch, (crop, crop), order=1, anti_aliasing=region > crop, preserve_range=True)
    return np.asarray(patch, dtype=np.float32)


class SyntheticRawDataset(Dataset):
    """Unprocessed sRGB scenes: an endless, deterministic source of (noisy RAW, sRGB) pairs.

    Sample ``index`` is built from ``np.random.default_rng([TRAIN_TAG, seed, index])`` (``split="train"``):
    pick a source uniformly, take a ``crop`` x ``crop`` scene (a random rescaled crop of a training photo,
    or a fresh dead-leaves scene), apply a random rot90 and flip to the sRGB, then unprocess it with a
    random camera and noise. Augmenting before unprocessing keeps the Bayer phase right.

    Args:
        length: number of samples.
        crop: full-resolution side of the sRGB target (even); the RAW is crop/2 on a side.
        seed: dataset seed.
        sources: any of ``"natural"`` (scikit-image photos) and ``"deadleaves"``.
        split: ``"train"`` (training photos) or ``"heldout"`` (held-out photos, a separate random stream).
        deadleaves_bank: 0 draws a fresh dead-leaves scene per sample (about 50 ms at 128 px); N > 0
            draws a random ``crop`` window from one of N scenes of twice the crop size, generated once per
            process from ``(seed, j)``. Camera, noise, crop and flips stay fresh per sample, so a bank
            of a few hundred scenes keeps the data varied while making sample generation ~10x cheaper
            for CPU training.
    """

    def __init__(
        self,
        length: int,
        crop: int = 256,
        seed: int = 0,
        sources: Sequence[str] = SOURCES,
        split: str = "train",
        deadleaves_bank: int = 0,
    ):
        if int(length) < 1:
            raise DatasetError(f"synthetic dataset: length must be >= 1, got {length}")
        self.crop = _check_crop(crop, "synthetic dataset")
        self.sources = tuple(sources)
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise DatasetError(
                f"synthetic dataset: unknown sources {unknown or '()'}; choose from {', '.join(SOURCES)}"
            )
        if split not in ("train", "heldout"):
            raise DatasetError(f"synthetic dataset: split must be 'train' or 'heldout', got {split!r}")
        self.length, self.seed, self.split = int(length), int(seed), split
        self._tag = TRAIN_TAG if split == "train" else HELDOUT_TAG
        self.deadleaves_bank = int(deadleaves_bank)
        self._bank: dict[int, np.ndarray] = {}

    def _bank_scene(self, j: int) -> np.ndarray:
        """Dead-leaves scene ``j`` of the bank, (2*crop, 2*crop, 3), generated on first use."""
        if j not in self._bank:
            rng = np.random.default_rng([BANK_TAG, self._tag, self.seed, j])
            self._bank[j] = synth.dead_leaves(2 * self.crop, 2 * self.crop, rng)
        return self._bank[j]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        index %= self.length
        rng = np.random.default_rng([self._tag, self.seed, index])
        source = self.sources[int(rng.integers(len(self.sources)))]
        if source == "natural":
            images = synth.natural_images(self.split)
            _, image = images[int(rng.integers(len(images)))]
            scene = _natural_crop(image, self.crop, rng)
        elif self.deadleaves_bank:
            big = self._bank_scene(int(rng.integers(self.deadleaves_bank)))
            y, x = (int(v) for v in rng.integers(0, self.crop + 1, size=2))
            scene = big[y : y + self.crop, x : x + self.crop]
        else:
            scene = synth.dead_leaves(self.crop, self.crop, rng)
        scene = np.rot90(scene, k=int(rng.integers(4)))
        if rng.integers(2):
            scene = scene[:, ::-1]
        return _unprocessed_sample(np.ascontiguousarray(scene), rng)


def heldout_set(n: int = 16, size: int = 128, seed: int = 1234) -> list[dict[str, Any]]:
    """The fixed evaluation set: held-out photos and held-out dead-leaves scenes, unprocessed with noise.

    See the module docstring for the exact definition. Each dict has the keys of
    :class:`SyntheticRawDataset` plus ``"name"`` (``"chelsea@y,x"`` or ``"deadleaves-<seed>-<i>"``).

    Args:
        n: number of samples.
        size: full-resolution side (even, at most 300, the short side of ``chelsea``).
        seed: set seed.
    """
    size = _check_crop(size, "held-out set")
    photos = synth.natural_images("heldout")
    if size > min(min(img.shape[:2]) for _, img in photos):
        raise ImageSizeError(f"held-out set: size {size} is larger than the held-out photos (at most 300)")
    samples = []
    for i in range(int(n)):
        rng = np.random.default_rng([HELDOUT_TAG, seed, i])
        if i % 2 == 0:
            name, image = photos[(i // 2) % len(photos)]
            h, w = image.shape[:2]
            y = 2 * int(rng.integers(0, (h - size) // 2 + 1))
            x = 2 * int(rng.integers(0, (w - size) // 2 + 1))
            scene, label = image[y : y + size, x : x + size], f"{name}@{y},{x}"
        else:
            scene, label = synth.dead_leaves(size, size, rng), f"deadleaves-{seed}-{i}"
        samples.append(_unprocessed_sample(np.ascontiguousarray(scene), rng, name=label))
    return samples


# ----------------------------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    """An RGB image file (8-bit JPEG; 8- or 16-bit PNG/TIFF) as (H, W, 3) float32 in [0, 1]; EXIF orientation
    is ignored."""
    from PIL import Image

    if path.suffix.lower() in (".png", ".tif", ".tiff"):
        from mobileisp.images import load_srgb

        try:
            return load_srgb(path)
        except MobileISPError as e:
            raise DatasetError(str(e)) from None

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read image ({e})") from None


def _fit_target(rgb: np.ndarray, shape: tuple[int, int], path: Path) -> np.ndarray:
    """Bring a target image to the RAW's full-resolution ``shape``: centre-crop a slightly larger image,
    resize one with the same aspect ratio, refuse anything else."""
    from skimage.transform import resize

    h, w = shape
    th, tw = rgb.shape[:2]
    if (th, tw) == (h, w):
        return rgb
    if h <= th <= h * (1 + _CROP_TOLERANCE) and w <= tw <= w * (1 + _CROP_TOLERANCE):
        y, x = (th - h) // 2, (tw - w) // 2
        return rgb[y : y + h, x : x + w]
    if abs((th / tw) / (h / w) - 1.0) <= _CROP_TOLERANCE:
        return resize(rgb, (h, w), order=1, anti_aliasing=th > h, preserve_range=True).astype(np.float32)
    raise DatasetError(f"{path}: image is {tw}x{th} but its RAW is {w}x{h} (full resolution); they do not match")


def _crop_pair(raw: np.ndarray, rgb: np.ndarray, crop: int | None, rng: np.random.Generator | None, path: Path):
    """Crop packed RAW (4, h, w) and sRGB (2h, 2w, 3) together: ``crop`` full-res pixels, even offsets.

    ``rng`` None gives the centre crop."""
    if crop is None:
        return raw, rgb
    half = crop // 2
    h, w = raw.shape[1:]
    if half > h or half > w:
        raise ImageSizeError(f"{path}: crop {crop} is larger than the image ({2 * w}x{2 * h})")
    if rng is None:
        y, x = (h - half) // 2, (w - half) // 2
    else:
        y, x = int(rng.integers(0, h - half + 1)), int(rng.integers(0, w - half + 1))
    return raw[:, y : y + half, x : x + half], rgb[2 * y : 2 * (y + half), 2 * x : 2 * (x + half)]


def _numeric_key(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


class ZurichRawToRgb(Dataset):
    """The Zurich RAW-to-RGB (ZRR) dataset of PyNET: Huawei P20 RAW patches and Canon 5D Mark IV photos.

    Layout (as released): ``ROOT/{train,test}/huawei_raw/<i>.png`` (single-channel 16-bit PNG holding the
    10-bit Bayer mosaic, 448 x 448) and ``ROOT/{train,test}/canon/<i>.jpg`` (448 x 448 RGB). ``root`` may
    also be a split folder itself (one holding ``huawei_raw`` and ``canon``).

    Conventions assumed and converted here:

    - the mosaic's top-left 2x2 cell is ``[[R, G], [G, B]]`` (PyNET's ``extract_bayer_channels`` takes R at
      ``[0::2, 0::2]`` and B at ``[1::2, 1::2]``). Its released order (B, Gb, R, Gr) names the green of the
      red rows ``Gb``; we pack by position into our (R, Gr, Gb, B) with Gr = ``[0::2, 1::2]``;
    - normalisation ``clip((x - 63) / (1020 - 63), 0, 1)``: LiteISPNet's black level 63 and white level
      1020 (clipped, per our RAW convention). PyNET-family weights expect ``x / 1020`` without black level,
      an adapter at the model edge, not here;
    - no metadata fields (the PNG patches carry none).

    Args:
        root: dataset root or split folder.
        split: ``"train"`` or ``"test"`` (ignored when ``root`` is a split folder).
        crop: optional even full-resolution crop; random (from ``[seed, index]``) for train, centred for test.
        seed: crop seed.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", crop: int | None = None, seed: int = 0):
        root = Path(root)
        if split not in ("train", "test"):
            raise DatasetError(f"ZRR: split must be 'train' or 'test', got {split!r}")
        base = root if (root / "huawei_raw").is_dir() else root / split
        raw_dir, rgb_dir = base / "huawei_raw", base / "canon"
        if not raw_dir.is_dir() or not rgb_dir.is_dir():
            raise DatasetError(
                f"{root}: not a Zurich RAW-to-RGB folder (expected {split}/huawei_raw and {split}/canon)"
            )
        stems = sorted((p.stem for p in raw_dir.iterdir() if p.suffix.lower() == ".png"), key=_numeric_key)
        if not stems:
            raise DatasetError(f"{raw_dir}: no .png RAW files")
        jpgs = {p.stem: p for p in rgb_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
        missing = [s for s in stems if s not in jpgs]
        if missing:
            raise DatasetError(
                f"{raw_dir / (missing[0] + '.png')}: no matching image in {rgb_dir} "
                f"({len(missing)} RAW files lack one)"
            )
        self.pairs = [(raw_dir / f"{s}.png", jpgs[s]) for s in stems]
        self.crop = None if crop is None else _check_crop(crop, "ZRR")
        self.seed = int(seed)
        self.random_crop = (base.name if base == root else split) != "test"

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        raw_path, rgb_path = self.pairs[index]
        raw = pack_zrr(read_zrr_mosaic(raw_path))
        rgb = _fit_target(_read_rgb(rgb_path), (2 * raw.shape[1], 2 * raw.shape[2]), rgb_path)
        rng = np.random.default_rng([self.seed, index % len(self)]) if self.random_crop else None
        raw, rgb = _crop_pair(raw, rgb, self.crop, rng, raw_path)
        return sample_dict(raw, rgb, None, name=raw_path.stem)


def read_zrr_mosaic(path: Path) -> np.ndarray:
    """A ZRR RAW PNG as a (H, W) integer Bayer mosaic."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mosaic = np.asarray(im)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read RAW PNG ({e})") from None
    if mosaic.ndim != 2:
        raise DatasetError(f"{path}: expected a single-channel Bayer PNG, got shape {mosaic.shape}")
    return mosaic


def pack_zrr(mosaic: np.ndarray) -> np.ndarray:
    """ZRR (H, W) mosaic -> packed RGGB (4, H/2, W/2) float32 in [0, 1] (odd edges dropped)."""
    h, w = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    x = (mosaic[:h, :w].astype(np.float32) - ZRR_BLACK_LEVEL) / (ZRR_WHITE_LEVEL - ZRR_BLACK_LEVEL)
    x = np.clip(x, 0.0, 1.0)
    return np.stack([x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]])


class RawJpegPairs(Dataset):
    """A folder of phone shots saved as RAW + JPEG: ``name.dng`` next to ``name.jpg`` / ``name.jpeg`` (or a
    lossless ``name.png`` / ``name.tif``, which ``mobileisp synth`` writes).

    Extensions are matched case-insensitively; the folder is not searched recursively. The DNG is decoded
    by :func:`mobileisp.raw.read_raw` (black level, white level, CFA -> RGGB); its metadata becomes the
    metadata tensors. The JPEG is the target: its pixel array is taken as stored (EXIF orientation is
    ignored), turned by the multiple of 90 degrees that best matches the RAW (a phone may store either
    sensor-oriented or rotated pixels), then centre-cropped to the RAW's full resolution (2h, 2w) if at
    most 2 % larger, or resized if it has the same aspect ratio.

    Args:
        root: the folder.
        crop: optional even full-resolution crop at a random (from ``[seed, index]``) even offset.
        seed: crop seed.
    """

    def __init__(self, root: str | os.PathLike, crop: int | None = None, seed: int = 0):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: not a folder of DNG + JPEG pairs")
        files = sorted(p for p in root.iterdir() if p.is_file())
        dngs = [p for p in files if p.suffix.lower() == ".dng"]
        if not dngs:
            raise DatasetError(f"{root}: no .dng files (expected name.dng + name.jpg pairs)")
        jpgs = {p.stem: p for p in files if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff")}
        self.pairs = []
        for dng in dngs:
            if dng.stem not in jpgs:
                raise DatasetError(f"{dng}: no image partner ({dng.stem}.jpg, .jpeg, .png or .tif)")
            self.pairs.append((dng, jpgs[dng.stem]))
        self.crop = None if crop is None else _check_crop(crop, f"{root}")
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from mobileisp.raw import read_raw

        dng, jpg = self.pairs[index]
        image = read_raw(dng)
        raw = np.asarray(image.packed, dtype=np.float32)
        h, w = raw.shape[1:]
        rgb = _fit_target(_orient_like(_read_rgb(jpg), raw), (2 * h, 2 * w), jpg)
        rng = np.random.default_rng([self.seed, index % len(self)])
        raw, rgb = _crop_pair(raw, rgb, self.crop, rng, dng)
        return sample_dict(raw, rgb, image.metadata, name=dng.stem)


def _orient_like(rgb: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Rotate ``rgb`` (H, W, 3) by the multiple of 90 degrees whose shape fits the packed ``raw`` (4, h, w)
    and whose luminance correlates best with the RAW's (both at <= 64 px)."""
    from skimage.transform import resize

    h, w = raw.shape[1:]
    landscape_raw, landscape_rgb = w >= h, rgb.shape[1] >= rgb.shape[0]
    candidates = (0, 2) if landscape_raw == landscape_rgb or h == w else (1, 3)
    step = max(1, max(h, w) // 64)
    ref = raw.mean(axis=0)[::step, ::step] ** (1 / 2.2)
    best, best_score = candidates[0], -np.inf
    for k in candidates:
        rotated = np.rot90(rgb, k)
        small = resize(rotated.mean(axis=-1), ref.shape, order=1, anti_aliasing=True)
        score = np.corrcoef(ref.ravel(), small.ravel())[0, 1] if ref.std() > 0 and small.std() > 0 else 0.0
        # the stored orientation wins unless the turned one matches clearly better
        if score > best_score + (0.2 if k == 2 else 0.0):
            best, best_score = k, score
    return np.ascontiguousarray(np.rot90(rgb, best))


_SPEC_FORMS = "'synthetic', 'zrr:PATH' or 'pairs:PATH'"


def open_dataset(
    spec: str, crop: int | None = None, seed: int = 0, split: str = "train", length: int = 100_000,
    deadleaves_bank: int = 0,
) -> Dataset:
    """Open a dataset from its command-line spec.

    Args:
        spec: ``"synthetic"``, ``"zrr:PATH"`` (``split`` folder of a ZRR root, or a split folder) or
            ``"pairs:PATH"`` (DNG + JPEG folder).
        crop: even full-resolution crop (synthetic default 256; real data default full frame).
        seed: sample/crop seed.
        split: ``"train"``/``"test"`` for ZRR, ``"train"``/``"heldout"`` for synthetic.
        length: number of synthetic samples.
        deadleaves_bank: see :class:`SyntheticRawDataset` (synthetic data only).
    """
    kind, _, path = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind == "synthetic" and not path:
        return SyntheticRawDataset(length, 256 if crop is None else crop, seed, split=split,
                                   deadleaves_bank=deadleaves_bank)
    if kind == "zrr" and path:
        return ZurichRawToRgb(path, split=split, crop=crop, seed=seed)
    if kind == "pairs" and path:
        return RawJpegPairs(path, crop=crop, seed=seed)
    raise DatasetError(f"unknown dataset {spec!r}; accepted forms: {_SPEC_FORMS}")


__all__ = [
    "HELDOUT_TAG", "TRAIN_TAG", "ZRR_BLACK_LEVEL", "ZRR_WHITE_LEVEL",
    "RawJpegPairs", "SyntheticRawDataset", "ZurichRawToRgb", "heldout_set", "open_dataset", "sample_dict",
]
