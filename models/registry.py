"""The model registry: name -> (ModelSpec, builder).

A ``forward`` network (every ISP here) takes packed RGGB RAW ``raw`` of shape (N, 4, H/2, W/2) in [0, 1] plus
the camera-metadata tensors its spec lists (see :mod:`mobileisp.metadata`), passed as keyword arguments, and
returns sRGB of shape (N, 3, H, W) in [0, 1] (``scale`` output pixels per packed pixel). An ``inverse``
network (``paramisp-inverse``) takes sRGB ``srgb`` (N, 3, H, W) plus its metadata and returns the clean packed
RAW (N, 4, H/2, W/2) that camera would have recorded (``scale`` 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mobileisp.errors import ModelError
from mobileisp.metadata import METADATA_FIELDS
from mobileisp.metadata_encoding import check_recipe, encoded_shape, model_metadata, source_fields

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model's interface.

    ``shape`` uses symbolic names for free dimensions ("N", "H/2", ...) and ints for fixed ones.
    """

    name: str
    shape: tuple[int | str, ...]
    layout: str = "NCHW"
    dtype: str = "float32"
    range: tuple[float, float] | None = (0.0, 1.0)
    description: str = ""


RAW_INPUT = TensorSpec("raw", ("N", 4, "H/2", "W/2"), description="packed RGGB, black-subtracted, / (white - black)")
SRGB_OUTPUT = TensorSpec("srgb", ("N", 3, "H", "W"), description="display sRGB")
SRGB_INPUT = TensorSpec("srgb", ("N", 3, "H", "W"), description="display sRGB")
RAW_OUTPUT = TensorSpec("raw", ("N", 4, "H/2", "W/2"), range=None,
                        description="packed RGGB, clean (noise-free), black-subtracted, / (white - black)")
#: ``forward``: RAW -> sRGB; ``inverse``: sRGB -> RAW (data synthesis).
DIRECTIONS = ("forward", "inverse")


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model consumes and produces, and what its exports must achieve.

    Attributes:
        name: registry name (``liteisp-mobile``).
        family: architecture family (``liteisp``).
        description: one line for ``mobileisp list``.
        metadata_fields: names of the extra inputs after ``raw``, in order: CameraMetadata fields, or inputs
            that ``metadata_encoding`` computes from such fields on the host.
        metadata_encoding: input name -> recipe of :mod:`mobileisp.metadata_encoding` (JSON data, recorded in
            every artefact), e.g. ParamISP's equalized optical parameters.
        scale: output pixels per packed input pixel along each axis (2 for every RAW->sRGB net here).
        size_multiple: packed height and width must be multiples of this (U-Net and DWT depths);
            inference pads by reflection and crops back.
        min_size: smallest packed height/width the network accepts (global pooling paths).
        export_size: default full-resolution (H, W) of the RAW mosaic used for export.
        parity_floors: precision -> minimum PSNR (dB) of the export against the fp32 torch reference.
        trainable: False for fixed pipelines (classical, libraw).
        exportable: False for pipelines that leave torch (libraw).
        weights: default weights file stem in models/weights/, or None.
        config: keyword arguments for the builder (the preset).
        loss: name of the training loss in :mod:`mobileisp.losses` (the paper's loss).
        train_config: the paper's optimiser and schedule (``lr``, ``optimizer``, ...), scaled by train.py.
        direction: ``forward`` (RAW -> sRGB) or ``inverse`` (sRGB -> RAW); see the module docstring.
    """

    name: str
    family: str
    description: str
    metadata_fields: tuple[str, ...] = ()
    metadata_encoding: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: int = 2
    size_multiple: int = 1
    min_size: int = 1
    export_size: tuple[int, int] = (256, 256)
    parity_floors: dict[str, float] = field(default_factory=dict)
    trainable: bool = True
    exportable: bool = True
    weights: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    loss: str = "l1"
    train_config: dict[str, Any] = field(default_factory=dict)
    direction: str = "forward"

    @property
    def inverse(self) -> bool:
        """True for an sRGB -> RAW network."""
        return self.direction == "inverse"

    @property
    def image_input(self) -> TensorSpec:
        """The image input: packed RAW (forward) or sRGB (inverse)."""
        return SRGB_INPUT if self.inverse else RAW_INPUT

    @property
    def input_scale(self) -> int:
        """Image-input pixels per packed RAW pixel along each axis: 1 for RAW, 2 for sRGB."""
        return 2 if self.inverse else 1

    def sample_input(self, sample: dict[str, Any]):
        """The image input of a dataset sample (``raw`` or ``srgb``, without batch axis)."""
        return sample["srgb"] if self.inverse else sample["raw"]

    def sample_target(self, sample: dict[str, Any]):
        """The ground truth of a dataset sample: ``srgb``, or for an inverse net the clean RAW
        (``raw_clean`` where the data has it, synthetic data does; else the recorded ``raw``)."""
        if not self.inverse:
            return sample["srgb"]
        return sample["raw_clean"] if "raw_clean" in sample else sample["raw"]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The image input followed by one tensor per metadata field."""
        meta = tuple(TensorSpec(f, ("N", *self.metadata_shape(f)), layout="N...", range=None,
                                description=self.metadata_encoding.get(f, {}).get("kind", ""))
                     for f in self.metadata_fields)
        return (self.image_input, *meta)

    def metadata_shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape of the metadata input ``name``."""
        if name in self.metadata_encoding:
            return encoded_shape(self.metadata_encoding[name])
        return METADATA_FIELDS[name]

    @property
    def metadata_sources(self) -> tuple[str, ...]:
        """The CameraMetadata fields a RAW file must record for this model (encodings expanded)."""
        return source_fields(self.metadata_fields, self.metadata_encoding)

    def metadata_inputs(self, values, batched: bool = True) -> dict[str, Any]:
        """The model's metadata keyword inputs from field values (a sample or batch dict), encodings applied.

        Raises:
            mobileisp.metadata_encoding.EncodingError: a needed field is missing or not encodable.
        """
        return model_metadata(self.metadata_fields, self.metadata_encoding, values, batched=batched)

    @property
    def output(self) -> TensorSpec:
        return RAW_OUTPUT if self.inverse else SRGB_OUTPUT

    def weights_path(self) -> Path | None:
        """Path of the shipped weights, or None when the model ships none."""
        return None if self.weights is None else WEIGHTS_DIR / f"{self.weights}.safetensors"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["inputs"] = [dataclasses.asdict(t) for t in self.inputs]
        d["output"] = dataclasses.asdict(self.output)
        return d


_REGISTRY: dict[str, tuple[ModelSpec, Callable[..., Any]]] = {}


def register_model(spec: ModelSpec, builder: Callable[..., Any]) -> None:
    """Register ``builder(**spec.config)`` under ``spec.name``. Names are unique."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    if spec.direction not in DIRECTIONS:
        raise ValueError(f"{spec.name}: direction must be one of {DIRECTIONS}, got {spec.direction!r}")
    for f in spec.metadata_fields:
        if f in spec.metadata_encoding:
            check_recipe(f, spec.metadata_encoding[f])
        elif f not in METADATA_FIELDS:
            raise ValueError(f"{spec.name}: unknown metadata field {f!r}")
    _REGISTRY[spec.name] = (spec, builder)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec of ``name``; raises ModelError naming the known models."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, weights: str | Path | None = "default", **overrides: Any):
    """Build ``name`` in eval mode.

    Args:
        name: registry name.
        weights: ``"default"`` loads the shipped weights when the spec has them (random init otherwise),
            None keeps the random init, a path loads that safetensors file (strict).
        overrides: builder keyword arguments replacing the preset's.
    """
    spec = get_spec(name)
    builder = _REGISTRY[name][1]
    model = builder(**{**spec.config, **overrides})
    path: Path | None
    if weights == "default":
        path = spec.weights_path()
        if path is not None and not path.exists():
            path = None
    else:
        path = None if weights is None else Path(weights)
    if path is not None:
        load_weights(model, path)
    return model.eval()


def load_weights(model, path: str | Path) -> None:
    """Load a safetensors state dict into ``model`` (strict), with one-line errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read weights {path}: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "mismatch"
        raise ModelError(f"weights {path.name} do not fit this model: {first}") from None
