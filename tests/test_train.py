"""Training loop and checkpoints: no pickle, exact resume, schedules, data order, outputs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from mobileisp import checkpoint as ckpt
from mobileisp import train as tr
from mobileisp.errors import OutputExistsError
from mobileisp.models.registry import ModelSpec, create_model, get_spec, list_models, register_model

TINY = "tiny-train"


class Tiny(nn.Module):
    """RAW (N, 4, h, w) + white balance -> sRGB (N, 3, 2h, 2w); one frozen parameter, like the Haar filters."""

    def __init__(self, ch: int = 8):
        super().__init__()
        self.frozen = nn.Parameter(torch.ones(4), requires_grad=False)
        self.conv1 = nn.Conv2d(4, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, 12, 3, padding=1)

    def forward(self, raw, white_balance):
        gains = white_balance[:, [0, 1, 1, 2], None, None] * self.frozen[None, :, None, None]
        x = torch.relu(self.conv1(raw * gains))
        return torch.sigmoid(nn.functional.pixel_shuffle(self.conv2(x), 2))


class TinyNoMeta(Tiny):
    """The same network without metadata inputs (for datasets that carry none, such as ZRR)."""

    def forward(self, raw):
        return super().forward(raw, torch.ones(raw.shape[0], 3))


class TinyTwoStage(nn.Module):
    """CameraNet-shaped: ``restore`` (RAW + colour matrix -> linear), ``enhance`` (linear -> sRGB)."""

    def __init__(self):
        super().__init__()
        self.restore_net = nn.Conv2d(4, 12, 3, padding=1)
        self.enhance_net = nn.Conv2d(3, 3, 3, padding=1)

    def restore(self, raw, color_matrix):
        return nn.functional.pixel_shuffle(self.restore_net(raw), 2) * color_matrix[:, 1:2, 1:2, None]

    def enhance(self, linear):
        return torch.sigmoid(self.enhance_net(linear.clamp_min(1e-4) ** (1 / 2.2)))

    def forward_stages(self, raw, color_matrix):
        restored = self.restore(raw, color_matrix)
        return {"restored": restored, "srgb": self.enhance(restored)}

    def forward(self, raw, color_matrix):
        return self.forward_stages(raw, color_matrix)["srgb"]


if TINY not in list_models():
    register_model(
        ModelSpec(name=TINY, family="test", description="test model", metadata_fields=("white_balance",),
                  loss="l1+ssim", train_config={"optimizer": "adam", "lr": 2e-3, "betas": (0.9, 0.99),
                                                "schedule": "step", "step_fraction": 0.5, "gamma": 0.5}),
        Tiny,
    )
    register_model(ModelSpec(name=f"{TINY}-nometa", family="test", description="test model", loss="l1",
                             train_config={"lr": 2e-3, "batch_size": 2, "crop": 32}), TinyNoMeta)
    register_model(ModelSpec(name=f"{TINY}-2stage", family="test", description="test model", loss="cameranet",
                             metadata_fields=("color_matrix",),
                             train_config={"lr": 1e-3, "stages": ["restore", "enhance", "joint"],
                                           "stage_lr": {"joint": 1e-4}, "lambda_restore": 0.9,
                                           "lr_decay": {"gamma": 0.1, "at_fraction": 0.5, "stages": ["restore", "enhance"]}}),
                   TinyTwoStage)


def _cfg(out: Path, **kw) -> tr.TrainConfig:
    base = dict(model=TINY, steps=6, out_dir=out, batch_size=4, crop=32, checkpoint_every=2, validate_every=0,
                log_every=1, heldout_n=2, heldout_size=32, threads=1, deterministic=True)
    base.update(kw)
    return tr.TrainConfig(**base)


def _train_losses(log: Path) -> list[tuple[int, float]]:
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs if r["event"] == "train"]


# ------------------------------------------------------------------------------------------ checkpoint


def _stepped_model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.8, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** s)
    for _ in range(2):
        opt.zero_grad()
        model(torch.rand(2, 4, 8, 8), torch.ones(2, 3)).mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_checkpoint_round_trip_without_pickle(tmp_path, monkeypatch):
    model, opt, sched = _stepped_model_and_optimizer()
    rng_before = torch.get_rng_state()

    def no_pickle(*a, **k):
        raise AssertionError("pickle used")

    for name in ("dumps", "dump", "loads", "load"):
        monkeypatch.setattr(pickle, name, no_pickle)
    monkeypatch.setattr(torch, "save", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)

    path = ckpt.save_checkpoint(tmp_path, 2, model, opt, sched, config={"model": "x"}, extra={"psnr": 20.5})
    assert path == tmp_path / "checkpoints" / "step-000000002"
    files = sorted(p.name for p in path.iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "state.json"]
    for f in ("model.safetensors", "optimizer.safetensors"):
        head = (path / f).read_bytes()[:9]
        assert head[8:9] == b"{"  # safetensors: u64 header length, then the JSON header (pickle starts 0x80)

    torch.rand(100)  # move the global RNG on
    model2, opt2, sched2 = _stepped_model_and_optimizer(seed=1)
    state = ckpt.load_checkpoint(path, model2, opt2, sched2)
    assert state["step"] == 2 and state["config"] == {"model": "x"} and state["extra"] == {"psnr": 20.5}
    assert torch.equal(torch.get_rng_state(), rng_before)
    for k, v in model.state_dict().items():
        assert torch.equal(model2.state_dict()[k], v), k
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert s2["param_groups"][0]["betas"] == (0.8, 0.9)
    for idx, st in s1["state"].items():
        for name, value in st.items():
            assert torch.equal(s2["state"][idx][name], value), (idx, name)
    assert sched2.state_dict()["last_epoch"] == 2 and sched2.get_last_lr() == sched.get_last_lr() == [0.00025]


def test_checkpoint_mismatch_is_a_one_line_error(tmp_path):
    model, opt, sched = _stepped_model_and_optimizer()
    path = ckpt.save_checkpoint(tmp_path, 1, model, opt, sched)
    with pytest.raises(ckpt.CheckpointError, match="does not fit") as e:
        ckpt.load_checkpoint(path, Tiny(ch=4))
    assert "\n" not in str(e.value)
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint"):
        ckpt.load_checkpoint(path, Tiny())


def test_latest_checkpoint_ignores_partial_folders_and_prunes(tmp_path):
    model, opt, sched = _stepped_model_and_optimizer()
    assert ckpt.latest_checkpoint(tmp_path) is None
    for step in (5, 10, 15):
        ckpt.save_checkpoint(tmp_path, step, model, opt, sched, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000000010", "step-000000015"]
    (tmp_path / "checkpoints" / "step-000000020").mkdir()  # a crash before state.json: not complete
    (tmp_path / "checkpoints" / ".step-000000025.abc.tmp").mkdir()
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000000015"


def test_optimizer_state_flattening_round_trip():
    _, opt, _ = _stepped_model_and_optimizer()
    tensors, meta = ckpt.flatten_optimizer_state(opt.state_dict())
    assert sorted(tensors) == sorted(f"state.{i}.{n}" for i in range(4) for n in ("step", "exp_avg", "exp_avg_sq"))
    json.dumps(meta)
    back = ckpt.unflatten_optimizer_state(tensors, meta)
    assert back["param_groups"] == opt.state_dict()["param_groups"]


# ------------------------------------------------------------------------------------------ schedule and data


def test_lr_schedules_scale_with_the_run():
    step = {"schedule": "step", "step_fraction": 0.5, "gamma": 0.5}
    assert [tr.lr_factor(s, 10, step) for s in range(11)] == [1.0] * 5 + [0.5] * 5 + [0.25]
    assert [tr.lr_factor(s, 1000, step) for s in (499, 500)] == [1.0, 0.5]
    multi = {"schedule": "multistep", "milestones": [0.75], "gamma": 0.1}
    assert [tr.lr_factor(s, 8, multi) for s in (5, 6, 7)] == [1.0, pytest.approx(0.1), pytest.approx(0.1)]
    assert tr.lr_factor(3, 8, {}) == 1.0
    cos = {"schedule": "cosine", "min_factor": 0.1}
    assert tr.lr_factor(0, 10, cos) == 1.0 and tr.lr_factor(5, 10, cos) == pytest.approx(0.55) and tr.lr_factor(10, 10, cos) == pytest.approx(0.1)
    with pytest.raises(tr.TrainingError, match="unknown LR schedule 'poly'"):
        tr.lr_factor(1, 10, {"schedule": "poly"})


def test_two_stage_train_config_resolution():
    tc = {"optimizer": "adam", "lr": 1e-4, "betas": (0.5, 0.999), "eps": 1e-4, "lambda_restore": 0.9,
          "stages": ["restore", "enhance", "joint"], "stage_lr": {"restore": 1e-4, "enhance": 1e-4, "joint": 1e-5},
          "lr_decay": {"gamma": 0.1, "at_fraction": 0.75, "stages": ["restore", "enhance"]}}
    r = tr.resolve_train_config(tc, "restore")
    assert (r["lr"], r["schedule"], r["milestones"], r["gamma"], r["lambda"]) == (1e-4, "multistep", [0.75], 0.1, 0.9)
    j = tr.resolve_train_config(tc, "joint")
    assert (j["lr"], j["schedule"]) == (1e-5, "constant")
    e2e = tr.resolve_train_config(tc, None)
    assert (e2e["lr"], e2e["schedule"], e2e["eps"]) == (1e-4, "multistep", 1e-4)
    single = ModelSpec(name="x", family="x", description="", loss="cameranet", train_config={**tc, "stages": ["joint"]})
    assert tr.resolve_stage(single, None) == "joint"
    with pytest.raises(tr.TrainingError, match="trains in stages joint, not 'restore'"):
        tr.resolve_stage(single, "restore")
    with pytest.raises(tr.TrainingError, match="--stage applies to two-stage models"):
        tr.resolve_stage(get_spec(TINY), "joint")


def test_data_order_is_a_pure_function_of_seed_step_and_rank():
    # ranks split each global batch; together they cover exactly the single-process batch
    single = list(tr.sample_positions(3, 8))
    split = list(tr.sample_positions(3, 8, rank=0, world=2)) + list(tr.sample_positions(3, 8, rank=1, world=2))
    assert single == split == list(range(24, 32))
    # finite dataset: each epoch is a permutation, different per epoch, identical on every call
    n = 10
    epoch0 = [tr.dataset_index(p, n, seed=3) for p in range(n)]
    epoch1 = [tr.dataset_index(p, n, seed=3) for p in range(n, 2 * n)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(n)) and epoch0 != epoch1
    assert epoch0 == [tr.dataset_index(p, n, seed=3) for p in range(n)]
    assert epoch0 != [tr.dataset_index(p, n, seed=4) for p in range(n)]
    assert tr.dataset_index(12345, None, seed=3) == 12345
    sampler = tr.StepBatchSampler(2, 4, 4, 1, 2, None, 0)
    assert list(sampler) == [[10, 11], [14, 15]] and len(sampler) == 2


def test_cli_arguments_build_the_config():
    import argparse

    p = argparse.ArgumentParser()
    tr.add_train_arguments(p)
    cfg = tr.config_from_args(p.parse_args(["liteisp-mobile", "--steps", "50", "--batch-size", "16", "--lr", "3e-4",
                                            "-o", "runs/a", "--resume", "--stage", "joint", "--init-weights", "w.safetensors"]))
    assert (cfg.model, cfg.steps, cfg.batch_size, cfg.lr, cfg.resume, cfg.stage) == ("liteisp-mobile", 50, 16, 3e-4, True, "joint")
    assert cfg.out_dir == Path("runs/a") and cfg.init_weights == Path("w.safetensors") and cfg.crop is None
    assert tr.TrainConfig(model="m", steps=1).out_dir == Path("out/train-m")


# ------------------------------------------------------------------------------------------ training runs


def test_resume_continues_the_run_exactly(tmp_path):
    straight = tr.train(_cfg(tmp_path / "straight"))
    first = tr.train(_cfg(tmp_path / "resumed", stop_at=3))
    assert (first.step, first.complete, first.weights) == (3, False, None)
    # simulate a crash after step 3 was logged but before its checkpoint landed: resume from step 2
    import shutil

    shutil.rmtree(ckpt.latest_checkpoint(tmp_path / "resumed"))
    second = tr.train(_cfg(tmp_path / "resumed", resume=True))
    assert (second.step, second.steps_run, second.resumed_from, second.complete) == (6, 4, 2, True)

    curve_a = _train_losses(tmp_path / "straight" / "log.jsonl")
    curve_b = _train_losses(tmp_path / "resumed" / "log.jsonl")
    assert [s for s, _ in curve_a] == [1, 2, 3, 4, 5, 6]
    # step 3 was redone; its first log line was dropped on resume
    assert [s for s, _ in curve_b] == [1, 2, 3, 4, 5, 6]
    assert torch.equal(torch.tensor([v for _, v in curve_a], dtype=torch.float64),
                       torch.tensor([v for _, v in curve_b], dtype=torch.float64))
    assert straight.final_loss == second.final_loss
    assert straight.psnr == second.psnr
    from safetensors.torch import load_file

    wa, wb = load_file(straight.weights), load_file(second.weights)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # and the LR schedule (halve at half of the run) was applied in both
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
           if '"event": "train"' in line]
    assert lrs == [2e-3] * 3 + [1e-3] * 3


def test_run_outputs_log_weights_and_model_card(tmp_path):
    out = tmp_path / "run"
    res = tr.train(_cfg(out, steps=4, checkpoint_every=0, validate_every=2, keep_checkpoints=1))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "log.jsonl", f"{TINY}.json", f"{TINY}.safetensors"]
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-000000004"]
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "train", "train", "val", "train", "train", "val", "end"]
    assert [e["step"] for e in events if e["event"] == "val"] == [2, 4]
    # the exported weights load into the registry model and reproduce the reported held-out metrics
    from mobileisp.data import heldout_set
    from mobileisp.evaluate import evaluate_model

    from safetensors.torch import load_file

    model = create_model(TINY, weights=None)
    model.load_state_dict(load_file(res.weights), strict=True)  # what create_model(weights=path) does
    row = evaluate_model(model, get_spec(TINY), heldout_set(n=2, size=32), "trained")
    assert row.psnr == pytest.approx(res.psnr, abs=1e-9) and row.ssim == pytest.approx(res.ssim, abs=1e-9)
    assert 5 < res.psnr < 40 and 0 < res.delta_e2000 < 60
    card = json.loads((out / f"{TINY}.json").read_text())
    assert card["steps"] == 4 and card["loss"] == "l1+ssim" and card["heldout"]["psnr"] == res.psnr
    assert card["hardware"].startswith("CPU") and card["wall_time_s"] > 0 and card["torch"].startswith("2.13")
    assert res.samples_per_s > 0 and res.train_time_s <= res.wall_time_s
    assert json.loads(json.dumps(res.to_dict()))["checkpoint"].endswith("step-000000004")


def test_existing_run_needs_resume_or_force_and_resume_checks_settings(tmp_path):
    out = tmp_path / "run"
    tr.train(_cfg(out, steps=2, heldout_n=0))
    with pytest.raises(OutputExistsError, match="pass --resume to continue it or --force"):
        tr.train(_cfg(out, steps=2, heldout_n=0))
    with pytest.raises(tr.TrainingError, match=r"other settings \(batch_size=4\)"):
        tr.train(_cfg(out, steps=2, heldout_n=0, batch_size=2, resume=True))
    res = tr.train(_cfg(out, steps=2, heldout_n=0, force=True, seed=1))
    assert res.step == 2 and res.resumed_from is None
    starts = [line for line in (out / "log.jsonl").read_text().splitlines() if '"event": "start"' in line]
    assert len(starts) == 1 and '"seed": 1' in starts[0]


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(tr.TrainingError, match="crop 31: tiny-train needs an even side"):
        tr.train(_cfg(tmp_path / "a", crop=31, heldout_n=0))
    with pytest.raises(tr.TrainingError, match="fixed pipeline"):
        tr.train(tr.TrainConfig(model="classical", steps=1, out_dir=tmp_path / "b"))
    with pytest.raises(tr.TrainingError, match="samples lack white_balance"):
        tr.train(_cfg(tmp_path / "c", data=f"zrr:{_zrr_folder(tmp_path)}", heldout_n=0))


def _zrr_folder(tmp_path: Path, n: int = 1) -> Path:
    import numpy as np
    from PIL import Image

    root = tmp_path / "zrr" / "train"
    (root / "huawei_raw").mkdir(parents=True, exist_ok=True)
    (root / "canon").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(63, 1020, (32, 32)).astype(np.uint16)).save(root / "huawei_raw" / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(root / "canon" / f"{i}.jpg")
    return tmp_path / "zrr"


def test_finite_dataset_epochs_and_worker_processes_give_the_same_run(tmp_path):
    # 3 images, global batch 2 (the spec's default), 3 steps: positions 0..5 span two shuffled epochs
    data = f"zrr:{_zrr_folder(tmp_path, n=3)}"
    runs = [tr.train(tr.TrainConfig(model=f"{TINY}-nometa", steps=3, out_dir=tmp_path / f"w{w}", data=data,
                                    num_workers=w, log_every=1, heldout_n=0, threads=1, deterministic=True))
            for w in (0, 1)]
    assert runs[0].batch_size == 2 and runs[0].crop == 32
    curves = [_train_losses(tmp_path / f"w{w}" / "log.jsonl") for w in (0, 1)]
    assert len(curves[0]) == 3 and curves[0] == curves[1]
    # each step saw a different pair of images: the losses are not all equal
    assert len({v for _, v in curves[0]}) == 3


def test_main_returns_2_with_a_one_line_error(tmp_path, capsys):
    assert tr.main([TINY, "--steps", "1", "--crop", "31", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobileisp: error: crop 31") and err.count("\n") == 1


def test_cameranet_stages_chain_through_init_weights(tmp_path):
    from safetensors.torch import load_file

    name = f"{TINY}-2stage"
    common = dict(model=name, steps=2, batch_size=2, crop=32, log_every=1, heldout_n=0, threads=1)
    r1 = tr.train(tr.TrainConfig(out_dir=tmp_path / "restore", stage="restore", **common))
    r2 = tr.train(tr.TrainConfig(out_dir=tmp_path / "enhance", stage="enhance", init_weights=r1.weights, **common))
    r3 = tr.train(tr.TrainConfig(out_dir=tmp_path / "joint", stage="joint", init_weights=r2.weights, **common))
    w1, w2, w3 = (load_file(r.weights) for r in (r1, r2, r3))
    # the enhance stage leaves Restore-Net bit-identical and trains Enhance-Net; the joint stage trains both
    assert torch.equal(w1["restore_net.weight"], w2["restore_net.weight"])
    assert not torch.equal(w1["enhance_net.weight"], w2["enhance_net.weight"])
    assert not torch.equal(w2["restore_net.weight"], w3["restore_net.weight"])
    assert not torch.equal(w2["enhance_net.weight"], w3["enhance_net.weight"])
    logs = {st: [json.loads(x) for x in (tmp_path / st / "log.jsonl").read_text().splitlines()] for st in ("restore", "joint")}
    assert [r["lr"] for r in logs["restore"] if r["event"] == "train"] == [1e-3, pytest.approx(1e-4)]  # x0.1 at half
    joint = [r for r in logs["joint"] if r["event"] == "train"]
    assert [r["lr"] for r in joint] == [1e-4, 1e-4]  # stage lr, constant
    assert joint[0]["loss"] == pytest.approx(0.9 * joint[0]["restore"] + 0.1 * joint[0]["enhance"], rel=1e-6)
