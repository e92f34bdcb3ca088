"""The pinned converter stack installs together and converts a small conv net end to end.

torch -> ONNX (opset 17) -> onnx2tf -> .tflite (fp32, fp16, int8 with float I/O) run by the LiteRT
interpreter, and torch -> coremltools -> .mlpackage. This guards constraints.txt: if a pin breaks the
chain, this test fails before any model-level export test does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

pytestmark = pytest.mark.slow


class TinyISP(nn.Module):
    """Packed RGGB (N, 4, h, w) -> RGB (N, 3, 2h, 2w): conv, ReLU, conv, pixel shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 12, 3, padding=1))
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(raw))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyISP().eval()


def test_torch_onnx_tflite_litert(tmp_path, tiny):
    import onnx2tf
    from ai_edge_litert.interpreter import Interpreter

    x = torch.rand(1, 4, 24, 32)
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(tiny, (x,), onnx_path, input_names=["raw"], output_names=["srgb"], opset_version=17, dynamo=False)
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.random((8, 24, 32, 4), dtype=np.float32))
    zeros, ones = np.zeros((1, 1, 1, 4), np.float32), np.ones((1, 1, 1, 4), np.float32)
    onnx2tf.convert(
        input_onnx_file_path=str(onnx_path),
        output_folder_path=str(tmp_path / "tf"),
        output_integer_quantized_tflite=True,
        custom_input_op_name_np_data_path=[["raw", str(calib), zeros, ones]],
        non_verbose=True,
    )
    ref = tiny(x).detach().permute(0, 2, 3, 1).numpy()
    errors = {}
    for name in ("tiny_float32", "tiny_float16", "tiny_integer_quant"):
        it = Interpreter(model_path=str(tmp_path / "tf" / f"{name}.tflite"))
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        assert inp["dtype"] == np.float32 and list(inp["shape"]) == [1, 24, 32, 4]  # NHWC, float I/O
        it.set_tensor(inp["index"], x.permute(0, 2, 3, 1).numpy())
        it.invoke()
        errors[name] = float(np.abs(it.get_tensor(out["index"]) - ref).max())
    assert errors["tiny_float32"] < 1e-5
    assert errors["tiny_float16"] < 5e-3
    assert errors["tiny_integer_quant"] < 0.05


def test_torch_coreml_mlpackage(tmp_path, tiny):
    import coremltools as ct

    x = torch.rand(1, 4, 24, 32)
    traced = torch.jit.trace(tiny, x)
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name="raw", shape=tuple(x.shape), dtype=np.float32)],
        outputs=[ct.TensorType(name="srgb", dtype=np.float32)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
    )
    path = tmp_path / "tiny.mlpackage"
    mlmodel.save(str(path))
    assert (path / "Manifest.json").is_file()
    spec = ct.utils.load_spec(str(path))
    assert [i.name for i in spec.description.input] == ["raw"]
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 4, 24, 32]
