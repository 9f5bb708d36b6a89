"""Tiny generative models, built once per session (see tiny_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tasks.tiny_models import build_tiny_bart, build_tiny_gpt2


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory) -> Path:
    return build_tiny_bart(tmp_path_factory.mktemp("tiny-bart"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))
