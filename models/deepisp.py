"""DeepISP: a full-resolution low-level residual stage plus a global quadratic colour transform.

Schwartz, Giryes, Bronstein, "DeepISP: Toward Learning an End-to-End Image Processing Pipeline",
IEEE TIP 28(2), 2019 (arXiv:1801.06724). Layers follow the first author's code (EliSchwartz/deepisp-theano,
``models.denoising_and_coloring`` with 15 denoise and 3 colouring layers):

- front end: bilinear demosaic of the Bayer mosaic (the paper's preprocessing), as a fixed conv on the packed
  RAW followed by depth-to-space; the image then lives in [-0.5, 0.5] as in the authors' code;
- low level: a 3->64 stem conv, then ``n_blocks`` blocks; each takes the previous 64-channel conv output,
  adds ``tanh(first 3 channels) / 10`` to the running image, applies ReLU to the other 61 and convolves
  [image, features] (3x3, reflect padding) to the next 64 channels;
- high level: from the last 64-channel conv output, ``n_hl`` x [3x3 conv stride 2 (valid), ReLU, max-pool 2]
  -> global mean -> dense -> 30 numbers, plus a fixed (non-trainable) bias, = a per-image 3x10 matrix W;
- output: ``W . (R, G, B, R^2, RG, RB, G^2, GB, B^2, 1)`` per pixel of the image, + 0.5.

668,446 trainable parameters, as the author code (the 0.629M often quoted is CameraNet's re-implementation).
Input is packed RGGB (N, 4, h, w); output sRGB at full resolution (N, 3, 2h, 2w), not clipped. The high-level
path's valid stride-2 convs and pools need a RAW image of at least 86x86 (packed 43x43); smaller inputs raise
:class:`ImageSizeError`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobileisp.errors import ImageSizeError
from mobileisp.models.classical import apply_matrix, cam_to_srgb
from mobileisp.models.registry import ModelSpec, register_model

#: Monomials of the colour transform, in the author code's order.
QUADRATIC_TERMS = ("r", "g", "b", "rr", "rg", "rb", "gg", "gb", "bb", "1")
PARITY_FLOORS = {
    "fp32": 60.0, "fp16": 45.0, "int8": 32.0, "int16x8": 40.0,
    "coreml-fp16": 45.0, "coreml-w8": 40.0, "coreml-w8a8": 30.0,
}


def _bilinear_kernel() -> torch.Tensor:
    """(12, 4, 3, 3) weights: packed RGGB -> channel ``3 colours x 4 sub-pixels`` for ``pixel_shuffle(2)``.

    Output channel ``4 * c + 2 * dy + dx`` is colour c (R, G, B) at mosaic pixel (2i + dy, 2j + dx); taps are at
    packed offsets -1..1. Standard bilinear: R/B from 2 or 4 nearest same-colour samples, G from 4.
    """
    k = torch.zeros(3, 4, 4, 3, 3)  # colour, sub-pixel (dy*2+dx), packed channel R Gr Gb B, ky, kx

    def tap(c, s, ch, dy, dx, v):
        k[c, s, ch, 1 + dy, 1 + dx] += v

    R, GR, GB, B = range(4)
    # red: at R, Gr (left/right), Gb (up/down), B (4 diagonals)
    tap(0, 0, R, 0, 0, 1.0)
    tap(0, 1, R, 0, 0, 0.5), tap(0, 1, R, 0, 1, 0.5)
    tap(0, 2, R, 0, 0, 0.5), tap(0, 2, R, 1, 0, 0.5)
    for dy in (0, 1):
        for dx in (0, 1):
            tap(0, 3, R, dy, dx, 0.25)
    # green: sampled at Gr/Gb, 4 neighbours at R and B
    tap(1, 1, GR, 0, 0, 1.0)
    tap(1, 2, GB, 0, 0, 1.0)
    tap(1, 0, GB, -1, 0, 0.25), tap(1, 0, GB, 0, 0, 0.25), tap(1, 0, GR, 0, -1, 0.25), tap(1, 0, GR, 0, 0, 0.25)
    tap(1, 3, GR, 0, 0, 0.25), tap(1, 3, GR, 1, 0, 0.25), tap(1, 3, GB, 0, 0, 0.25), tap(1, 3, GB, 0, 1, 0.25)
    # blue: mirror of red
    tap(2, 3, B, 0, 0, 1.0)
    tap(2, 2, B, 0, -1, 0.5), tap(2, 2, B, 0, 0, 0.5)
    tap(2, 1, B, -1, 0, 0.5), tap(2, 1, B, 0, 0, 0.5)
    for dy in (-1, 0):
        for dx in (-1, 0):
            tap(2, 0, B, dy, dx, 0.25)
    return k.reshape(12, 4, 3, 3)


class BilinearDemosaic(nn.Module):
    """Fixed bilinear demosaic: packed RGGB (N, 4, h, w) -> RGB (N, 3, 2h, 2w), same range.

    A 3x3 conv on the packed image (reflect padded, i.e. mirrored by one CFA period) and depth-to-space;
    exact on constant images and equal to the textbook mosaic-domain bilinear filter inside the image.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", _bilinear_kernel(), persistent=False)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(F.pad(raw, (1, 1, 1, 1), mode="reflect"), self.weight), 2)


class ReflectConv2d(nn.Conv2d):
    """3x3 stride-1 conv on a reflect-padded input (output has the input's size)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1, padding_mode="reflect")


class LowLevelBlock(nn.Module):
    """One low-level step: image += tanh(y[:, :3]) / 10; y' = conv([image, relu(y[:, 3:])]).

    Args (forward):
        y: (N, width, H, W) previous conv output (linear).
        image: (N, 3, H, W) running image estimate in [-0.5, 0.5].

    Returns:
        (y', image'): next conv output (N, width, H, W) and the updated image.
    """

    def __init__(self, width: int):
        super().__init__()
        self.conv = ReflectConv2d(width, width)

    def forward(self, y: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = image + torch.tanh(y[:, :3]) / 10
        return self.conv(torch.cat([image, F.relu(y[:, 3:])], dim=1)), image


class HighLevelStage(nn.Module):
    """``n`` x [3x3 conv stride 2 (valid), ReLU, max-pool 2] -> mean over H, W -> dense -> (N, 30)."""

    def __init__(self, cin: int, width: int, n: int, n_out: int = 3 * len(QUADRATIC_TERMS)):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(cin if i == 0 else width, width, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width if n else cin, n_out)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(y).mean(dim=(2, 3)))


class QuadraticColorTransform(nn.Module):
    """Per-image quadratic colour transform ``out_c = sum_k W[k, c] * m_k(r, g, b)``, W = params + bias.

    ``m`` are :data:`QUADRATIC_TERMS`. ``bias`` (10, 3) is a fixed buffer (saved in the state dict; identity on
    (r, g, b) until :meth:`fit` results are copied in), as the authors' non-trainable "colour transform init".
    Written as broadcast multiplies and adds, so it exports without gathers or batched matmuls.

    Args (forward):
        image: (N, 3, H, W).
        params: (N, 30), flattened (10, 3) row-major as the authors' dense layer output.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("bias", torch.eye(len(QUADRATIC_TERMS), 3))

    def forward(self, image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        w = (params.reshape(-1, len(QUADRATIC_TERMS), 3) + self.bias).transpose(1, 2)[..., None]  # (N, 3, 10, 1)
        r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
        terms = (r, g, b, r * r, r * g, r * b, g * g, g * b, b * b)
        out = w[:, :, 9:10]
        for k, t in enumerate(terms):
            out = out + w[:, :, k:k + 1] * t
        return out

    @staticmethod
    def monomials(image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 10, H, W) in :data:`QUADRATIC_TERMS` order."""
        r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
        return torch.cat([r, g, b, r * r, r * g, r * b, g * g, g * b, b * b, torch.ones_like(r)], dim=1)

    @staticmethod
    def fit(source: torch.Tensor, target: torch.Tensor, affine: bool = False) -> torch.Tensor:
        """Least-squares W (10, 3) mapping ``source`` to ``target``, both (3, H, W) in [-0.5, 0.5].

        The authors initialise ``bias`` with the median of these per-image "oracle" transforms over the
        training set (source = bilinear-demosaiced RAW); the paper averages affine fits (``affine=True``
        leaves the second-order rows 0).
        """
        m = QuadraticColorTransform.monomials(source[None].double())[0].reshape(len(QUADRATIC_TERMS), -1).T
        keep = [0, 1, 2, 9] if affine else list(range(len(QUADRATIC_TERMS)))
        sol = torch.linalg.lstsq(m[:, keep], target.double().reshape(3, -1).T).solution
        w = torch.zeros(len(QUADRATIC_TERMS), 3, dtype=torch.float64)
        w[keep] = sol
        return w.float()


class DeepISP(nn.Module):
    """DeepISP on packed RGGB.

    Args:
        n_blocks: low-level blocks N_ll (15 in the paper's full ISP).
        width: low-level channels (64 = 61 features + 3 image residual).
        n_hl: high-level conv/pool layers N_hl (3).
        hl_width: high-level conv channels (64).
        camera_frontend: white-balance the RAW with the file's as-shot gains, map the demosaiced camera RGB
            to linear sRGB with its colour matrix and apply a 1/2.2 display gamma before the network (fixed,
            parameter-free). The paper's
            network gets neither; a phone's ISP knows both per frame (AWB gains, calibration matrix), so the
            mobile preset uses them and the network learns denoising, detail and tone.

    Input ``raw`` (N, 4, h, w) in [0, 1], h, w >= 43 (with ``camera_frontend``: also ``white_balance`` (N, 3)
    gains and ``color_matrix`` (N, 3, 3) XYZ->camera); output sRGB (N, 3, 2h, 2w), nominally [0, 1], not clipped.
    """

    def __init__(self, n_blocks: int = 15, width: int = 64, n_hl: int = 3, hl_width: int = 64,
                 camera_frontend: bool = False):
        super().__init__()
        self.camera_frontend = camera_frontend
        self.demosaic = BilinearDemosaic()
        self.stem = ReflectConv2d(3, width)
        self.blocks = nn.ModuleList(LowLevelBlock(width) for _ in range(n_blocks))
        self.high = HighLevelStage(width, hl_width, n_hl)
        self.color = QuadraticColorTransform()
        self.min_size = _min_size(n_hl)

    def low_level(self, raw: torch.Tensor, white_balance: torch.Tensor | None = None,
                  color_matrix: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(last conv output (N, width, H, W), image estimate (N, 3, H, W) in [-0.5, 0.5]) at full resolution."""
        if raw.dim() != 4 or raw.shape[1] != 4:
            raise ImageSizeError(f"deepisp needs packed RAW (N, 4, h, w), got shape {tuple(raw.shape)}")
        if min(raw.shape[-2:]) < self.min_size:
            h, w = (2 * int(s) for s in raw.shape[-2:])
            side = 2 * self.min_size
            raise ImageSizeError(f"deepisp needs a RAW image of at least {side}x{side}, got {h}x{w}")
        if self.camera_frontend:
            if white_balance is None or color_matrix is None:
                raise ValueError("this DeepISP preset needs white_balance and color_matrix inputs")
            gains = torch.cat([white_balance[:, 0:1], white_balance[:, 1:2], white_balance[:, 1:2], white_balance[:, 2:3]], 1)
            linear = apply_matrix(cam_to_srgb(color_matrix), self.demosaic(raw * gains[:, :, None, None]))
            image = linear.clamp_min(1e-6) ** (1.0 / 2.2) - 0.5  # display gamma: the quadratic transform then only tones
        else:
            image = self.demosaic(raw) - 0.5
        y = self.stem(image)
        for block in self.blocks:
            y, image = block(y, image)
        return y, image

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor | None = None,
                color_matrix: torch.Tensor | None = None) -> torch.Tensor:
        y, image = self.low_level(raw, white_balance, color_matrix)
        return self.color(image, self.high(y)) + 0.5


def _min_size(n_hl: int) -> int:
    """Smallest packed size whose full-resolution image survives ``n_hl`` x (valid 3x3/2 conv, 2x2 pool)."""
    h = 1
    while True:
        s = 2 * h
        for _ in range(n_hl):
            s = ((s - 3) // 2 + 1) // 2 if s >= 3 else 0
        if s >= 1:
            return h
        h += 1


# --- registration --------------------------------------------------------------------------------------

TRAIN_CONFIG = {
    "optimizer": "adam", "lr": 5e-5, "betas": (0.9, 0.999), "eps": 1e-8,
    "loss_alpha": 0.5,  # weight of the MS-SSIM(L) term (author code: loss_Lab(vgg_alpha=0.5))
    "batch_size": 1, "crop": 1024,  # full-resolution RAW pixels
    "epochs": 700, "schedule": "constant",
    "augment": ["hflip"],
    "color_init": "median over training images of QuadraticColorTransform.fit(demosaiced input, target)",
}

register_model(
    ModelSpec(
        name="deepisp",
        family="deepisp",
        description="DeepISP (TIP'19): 15 full-res residual blocks + global quadratic colour transform, 0.67M params",
        size_multiple=1,
        min_size=_min_size(3),
        export_size=(256, 256),
        parity_floors=dict(PARITY_FLOORS),
        weights=None,
        loss="deepisp",
        train_config=TRAIN_CONFIG,
    ),
    DeepISP,
)

register_model(
    ModelSpec(
        name="deepisp-lite",
        family="deepisp",
        description="DeepISP lite: camera WB + colour matrix front end, 5 full-res blocks of 16 ch, 36K params",
        metadata_fields=("white_balance", "color_matrix"),
        size_multiple=1,
        min_size=_min_size(3),
        export_size=(256, 256),
        parity_floors=dict(PARITY_FLOORS),
        weights="deepisp-lite",
        config={"n_blocks": 5, "width": 16, "hl_width": 32, "camera_frontend": True},
        loss="deepisp",
        # a ~10-minute CPU run: the paper's 5e-5 barely moves in ~150 steps (val PSNR 10.8 dB after 80 steps
        # on synthetic data, 15.6 dB with 1e-3), so a larger peak LR with cosine decay
        train_config={
            **TRAIN_CONFIG, "lr": 1e-3, "schedule": "cosine", "min_factor": 0.05, "crop": 128, "batch_size": 8,
        },
    ),
    DeepISP,
)
