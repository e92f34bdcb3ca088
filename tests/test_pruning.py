"""Pruned CameraNet: the shipped width map, torch-pruning round trip into the width-map-built class."""

import json

import pytest
import torch

from mobileisp.errors import ModelError, OutputExistsError
from mobileisp.models import create_model, get_spec
from mobileisp.models.cameranet import CameraNet, default_widths
from mobileisp.models.pruning import (
    load_width_map,
    main,
    make_pruned_cameranet,
    num_params,
    prune_cameranet,
    tracing_inputs,
    width_map_of,
)


def small_widths():
    """The official widths / 8 (FC hidden / 8), so pruning tests run in about a second."""
    w = {f"restore_net.{k}": v // 8 for k, v in default_widths(False).items()}
    w.update({f"enhance_net.{k}": v // 8 for k, v in default_widths(True).items()})
    return w


def test_shipped_width_map_builds_the_recorded_model():
    doc = load_width_map("cameranet-pruned")
    model = create_model("cameranet-pruned", weights=None)
    assert num_params(model) == doc["params"]
    assert doc["full_params"] == 24_952_728
    assert 1_500_000 <= doc["params"] <= 3_000_000
    assert width_map_of(model) == doc["widths"]
    inputs = tracing_inputs(32)
    with torch.no_grad():
        out = model(**inputs)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


def test_pruned_spec_is_a_preset_of_cameranet():
    spec = get_spec("cameranet-pruned")
    assert spec.weights == "cameranet-pruned" and spec.config == {"widths": "cameranet-pruned"}
    assert spec.metadata_fields == ("white_balance", "color_matrix") and spec.loss == "cameranet"
    assert type(create_model("cameranet-pruned", weights=None)) is CameraNet


def test_torch_pruning_weights_load_into_width_map_model_exactly():
    torch.manual_seed(0)
    full = CameraNet(widths=small_widths()).eval()
    before = {k: v.clone() for k, v in full.state_dict().items()}
    pruned, widths = prune_cameranet(full, ratio=0.5, round_to=None)

    assert all(torch.equal(v, full.state_dict()[k]) for k, v in before.items())  # the input is untouched
    assert num_params(pruned) < 0.3 * num_params(full)
    assert widths["restore_net.enc.0.conv"] == 2 and widths["enhance_net.mid.conv"] == 32
    assert widths["enhance_net.glob.fc1"] == 64
    assert widths["enhance_net.enc.1.conv"] == widths["enhance_net.enc.1.conv2"]  # residual coupling kept
    # kept filters are original filters (real channel removal): the stem's inputs are never pruned
    orig, kept = full.restore_net.enc[0].conv.weight, pruned.restore_net.enc[0].conv.weight
    idx = [next(i for i in range(orig.shape[0]) if torch.equal(row, orig[i])) for row in kept]
    assert len(set(idx)) == kept.shape[0] == 2

    rebuilt = CameraNet(widths=widths).eval()
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    assert num_params(rebuilt) == num_params(pruned)
    inputs = tracing_inputs(32)
    with torch.no_grad():
        a, b = pruned.forward_stages(**inputs), rebuilt.forward_stages(**inputs)
    assert torch.equal(a["srgb"], b["srgb"]) and torch.equal(a["restored"], b["restored"])


def test_make_pruned_cameranet_writes_the_width_map(tmp_path):
    torch.manual_seed(0)
    full = CameraNet(widths=small_widths())
    out = tmp_path / "pruned.json"
    model = make_pruned_cameranet(full, 0.5, out, note="unit test")
    doc = json.loads(out.read_text())
    assert doc["params"] == num_params(model) and doc["widths"] == width_map_of(model)
    assert doc["ratio"] == 0.5 and doc["source"] == "unit test"
    assert load_width_map(out)["widths"] == doc["widths"]
    with pytest.raises(OutputExistsError):
        make_pruned_cameranet(full, 0.5, out)


def test_bad_inputs_raise_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_width_map("no-such-map")
    bad = tmp_path / "bad.json"
    bad.write_text('{"widths": {"restore_net.enc.0.conv": -3}}')
    with pytest.raises(ModelError, match="positive integers"):
        load_width_map(bad)
    with pytest.raises(ModelError, match="ratio"):
        prune_cameranet(CameraNet(widths=small_widths()), 1.0)


@pytest.mark.slow
def test_cli_reproduces_the_shipped_width_map(tmp_path):
    # per-layer pruning: widths depend on ratio and rounding only, so trained weights give the same map
    doc = load_width_map("cameranet-pruned")
    out = tmp_path / "cameranet-pruned.json"
    torch.set_num_threads(1)
    assert main(["--ratio", str(doc["ratio"]), "--out", str(out)]) == 0
    new = json.loads(out.read_text())
    assert new["widths"] == doc["widths"] and new["params"] == doc["params"]


def test_outer_levels_are_capped_at_the_shallow_ratio():
    """The outer U-Net levels keep at least half their channels (0.65 everywhere left the 12-channel output
    conv fed by 8 channels: grey, flat images); the inner levels are pruned by the full ratio."""
    torch.manual_seed(0)
    full = CameraNet(widths=small_widths()).eval()
    _, capped = prune_cameranet(full, ratio=0.75, round_to=None, shallow_ratio=0.5, shallow_levels=2)
    _, plain = prune_cameranet(full, ratio=0.75, round_to=None, shallow_levels=0)
    out0 = full.restore_net.enc[0].conv.weight.shape[0]
    out2 = full.restore_net.enc[2].conv.weight.shape[0]
    assert capped["restore_net.enc.0.conv"] == round(out0 * 0.5)
    assert plain["restore_net.enc.0.conv"] == round(out0 * 0.25)
    assert capped["restore_net.enc.2.conv"] == plain["restore_net.enc.2.conv"] == round(out2 * 0.25)
