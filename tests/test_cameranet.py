"""CameraNet: the official parameter count, stage outputs, size rules and the XYZ front end."""

import numpy as np
import pytest
import torch

from mobileisp.errors import ImageSizeError, ModelError
from mobileisp.metadata import SRGB_TO_XYZ
from mobileisp.models import create_model, get_spec
from mobileisp.models.cameranet import XYZ_D65, CameraNet, CameraToXYZ, _inv3x3, reflect_pad

# Sony-like XYZ->camera matrix (DNG ColorMatrix convention)
CM = torch.tensor([[[0.6722, -0.0635, -0.0963], [-0.4287, 1.2460, 0.2028], [-0.0908, 0.2162, 0.5668]]])
WB = torch.tensor([[2.1, 1.0, 1.7]])


@pytest.fixture(scope="module")
def cameranet():
    torch.manual_seed(0)
    return create_model("cameranet", weights=None)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_matches_official_graph(cameranet):
    # zhetongliang/CameraNet_official: Restore-Net 11,687,756 + Enhance-Net 13,264,972
    assert n_params(cameranet.restore_net) == 11_687_756
    assert n_params(cameranet.enhance_net) == 13_264_972
    assert n_params(cameranet) == 24_952_728


def test_dilations_and_global_branch(cameranet):
    enh, res = cameranet.enhance_net, cameranet.restore_net
    assert [lvl.conv1.dilation[0] for lvl in [*enh.enc, enh.mid]] == [1, 2, 2, 4, 8]
    assert [lvl.conv1.dilation[0] for lvl in enh.dec] == [4, 2, 2, 1]
    assert all(m.dilation == (1, 1) for m in res.modules() if isinstance(m, torch.nn.Conv2d))
    assert res.glob is None and enh.glob.fc1.out_features == 1024 and enh.glob.fc_scale.out_features == 512


def test_forward_stages_shapes_and_finite(cameranet):
    raw = torch.rand(1, 4, 32, 48)
    with torch.no_grad():
        stages = cameranet.forward_stages(raw, white_balance=WB, color_matrix=CM)
        out = cameranet(raw, white_balance=WB, color_matrix=CM)
    assert set(stages) == {"restored", "srgb"}
    assert stages["restored"].shape == stages["srgb"].shape == (1, 3, 64, 96)
    assert all(torch.isfinite(t).all() for t in stages.values())
    torch.testing.assert_close(out, stages["srgb"], rtol=0, atol=0)


def test_enhance_runs_on_a_linear_target(cameranet):
    with torch.no_grad():
        out = cameranet.enhance(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 4, 40, 48), (1, 4, 16, 16), (1, 3, 32, 32), (4, 32, 32)])
def test_bad_sizes_raise_image_size_error(cameranet, shape):
    with pytest.raises(ImageSizeError):
        cameranet(torch.rand(*shape), white_balance=WB, color_matrix=CM)


def test_xyz_front_end_is_invertible_and_scale_free():
    torch.manual_seed(0)
    raw = torch.rand(1, 4, 3, 5)
    front = CameraToXYZ()
    out = front(raw, WB, CM)
    torch.testing.assert_close(front(raw, WB, 7.0 * CM), out)  # the file's normalisation of the matrix does not matter
    # a neutral surface: the raw the gains turn into (1, 1, 1) lands on D65 white
    neutral = (1.0 / WB).reshape(1, 3, 1, 1)
    raw_white = torch.cat([neutral[:, :1], neutral[:, 1:2], neutral[:, 1:2], neutral[:, 2:]], dim=1)
    torch.testing.assert_close(front(raw_white, WB, CM)[0, :, 0, 0], torch.tensor([*XYZ_D65, 0.0]), rtol=0, atol=1e-5)
    # invert: camera RGB = diag(1 / (cam_white * gains)) CM XYZ, then Gr/Gb from their mean and half-difference
    cam_white = CM[0] @ torch.tensor(XYZ_D65)
    xyz, d = out[:, :3], out[:, 3:]
    rgb = torch.einsum("ij,njhw->nihw", CM[0] / (cam_white * WB[0])[:, None], xyz)
    back = torch.cat([rgb[:, :1], rgb[:, 1:2] + d, rgb[:, 1:2] - d, rgb[:, 2:]], dim=1)
    torch.testing.assert_close(back, raw, rtol=0, atol=1e-5)


def test_inverse_3x3_by_cofactors():
    m = torch.randn(4, 3, 3, dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(_inv3x3(m), torch.linalg.inv(m))


def test_restored_is_linear_srgb_from_xyz():
    # the fixed inter-stage matrix is XYZ -> linear sRGB
    net = CameraNet()
    xyz = torch.from_numpy(SRGB_TO_XYZ.astype(np.float32)).T.reshape(3, 3, 1, 1)  # columns: XYZ of R, G, B
    torch.testing.assert_close(net.xyz_to_srgb(xyz), torch.eye(3).reshape(3, 3, 1, 1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size,p", [((8, 8), 1), ((8, 9), 8), ((2, 5), 8), ((3, 7), 7)])
def test_reflect_pad_matches_numpy(size, p):
    x = torch.randn(1, 2, *size)
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
    np.testing.assert_array_equal(reflect_pad(x, p).numpy(), ref)


def test_unknown_or_inconsistent_widths_raise():
    with pytest.raises(ModelError, match="unknown"):
        CameraNet(widths={"restore_net.enc.9.conv": 8})
    with pytest.raises(ModelError, match="residual"):
        CameraNet(widths={"enhance_net.enc.0.conv2": 16})  # Enhance-Net's residual add needs conv2 == conv


def test_spec():
    spec = get_spec("cameranet")
    assert spec.metadata_fields == ("white_balance", "color_matrix")
    assert spec.size_multiple == 16 and spec.min_size == 32 and spec.export_size == (256, 256)
    assert spec.loss == "cameranet" and spec.weights is None
    cfg = spec.train_config
    assert cfg["stages"] == ["restore", "enhance", "joint"] and cfg["lambda_restore"] == 0.5
    assert (cfg["optimizer"], cfg["lr"], cfg["betas"], cfg["eps"]) == ("adam", 1e-4, (0.5, 0.999), 1e-4)
    assert spec.parity_floors == {
        "fp32": 60.0, "fp16": 45.0, "int8": 32.0, "int16x8": 40.0,
        "coreml-fp16": 45.0, "coreml-w8": 40.0, "coreml-w8a8": 30.0,
    }
