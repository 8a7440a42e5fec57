"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """An untrained micro model + tokenizer saved to a folder (build_random_tiny), one per module."""
    torch = pytest.importorskip("torch")
    from rewardfilter.adapters.code.tiny import build_random_tiny

    torch.set_num_threads(1)
    return build_random_tiny(tmp_path_factory.mktemp("micro") / "m", hidden_size=32, num_layers=2)
