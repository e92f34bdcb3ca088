"""Shared pytest fixtures and settings."""

from __future__ import annotations

import os

import pytest

# Two cores on CI: keep torch from oversubscribing them when tests run heavy graphs.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _quiet_torch_threads():
    import torch

    torch.set_num_threads(2)
    yield
