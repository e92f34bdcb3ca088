"""Multi-process training: two Gloo ranks on CPU launched by torchrun, against one process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

HARNESS = textwrap.dedent('''
    """Registers a tiny model, runs mobileisp.train.main and dumps this rank's final weights."""
    import os
    import sys

    import torch
    from torch import nn

    from mobileisp.models.registry import ModelSpec, list_models, register_model

    NAME = "tiny-ddp"
    BUILT = []


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.frozen = nn.Parameter(torch.ones(4), requires_grad=False)
            self.conv1 = nn.Conv2d(4, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 12, 3, padding=1)

        def forward(self, raw, white_balance):
            gains = white_balance[:, [0, 1, 1, 2], None, None] * self.frozen[None, :, None, None]
            x = torch.relu(self.conv1(raw * gains))
            return torch.sigmoid(nn.functional.pixel_shuffle(self.conv2(x), 2))


    def build():
        BUILT.append(Tiny())
        return BUILT[-1]


    if NAME not in list_models():
        register_model(ModelSpec(name=NAME, family="test", description="test", metadata_fields=("white_balance",),
                                 loss="l1+ssim", train_config={"lr": 3e-3}), build)

    if __name__ == "__main__":
        from safetensors.torch import save_file

        from mobileisp.train import main

        dump_dir = sys.argv[1]
        rc = main(sys.argv[2:])
        rank = os.environ["RANK"]
        save_file({k: v.detach().clone() for k, v in BUILT[-1].state_dict().items()},
                  os.path.join(dump_dir, f"rank{rank}.safetensors"))
        with open(os.path.join(dump_dir, f"rank{rank}.json"), "w") as f:
            f.write(f'{{"world": {os.environ["WORLD_SIZE"]}, "rc": {rc}}}')
        sys.exit(rc)
''')

ARGS = ["--steps", "3", "--batch-size", "4", "--crop", "32", "--log-every", "1", "--checkpoint-every", "2",
        "--validate-every", "0", "--heldout-n", "2", "--heldout-size", "32", "--threads", "1", "--deterministic"]


def _load_harness(path: Path):
    spec = importlib.util.spec_from_file_location("ddp_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_combined_batch(tmp_path):
    from safetensors.torch import load_file

    from mobileisp import train as tr

    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    out = tmp_path / "ddp-run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(dumps), "tiny-ddp", "-o", str(out), *ARGS],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    # both ranks ran, in a world of 2, and ended with bit-identical weights (gradients were all-reduced)
    for r in (0, 1):
        assert json.loads((dumps / f"rank{r}.json").read_text()) == {"world": 2, "rc": 0}
    w0, w1 = load_file(str(dumps / "rank0.safetensors")), load_file(str(dumps / "rank1.safetensors"))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)

    # only rank 0 wrote: one start/end record, each step logged once, the result printed once
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "train", "train", "train", "val", "end"]
    assert events[0]["world_size"] == 2 and events[-1]["world_size"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "log.jsonl", "tiny-ddp.json", "tiny-ddp.safetensors"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000000002", "step-000000003"]
    assert proc.stdout.count('"model": "tiny-ddp"') == 1

    # one process with the same global batch of 4 takes the same samples and the same steps
    _load_harness(script)
    single = tr.train(tr.config_from_args(_parse(["tiny-ddp", "-o", str(tmp_path / "single"), *ARGS])))
    ws = load_file(single.weights)
    torch.manual_seed(0)
    init = _load_harness(script).Tiny().state_dict()
    for k in ws:
        assert torch.allclose(ws[k], w0[k], rtol=0, atol=1e-6), k
    assert not torch.equal(ws["conv1.weight"], init["conv1.weight"])
    losses_ddp = [e["loss"] for e in events if e["event"] == "train"]
    losses_one = [json.loads(line)["loss"] for line in (tmp_path / "single" / "log.jsonl").read_text().splitlines()
                  if '"event": "train"' in line]
    assert losses_ddp == pytest.approx(losses_one, abs=1e-6)
    assert torch.equal(load_file(str(out / "tiny-ddp.safetensors"))["conv2.bias"], w0["conv2.bias"])


def _parse(argv):
    import argparse

    from mobileisp.train import add_train_arguments

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    return p.parse_args(argv)
