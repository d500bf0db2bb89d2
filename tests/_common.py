"""Helpers shared by test modules in different folders: the one-thread fixture, the registered networks and
non-trivial BatchNorm statistics for untrained networks, loading a script (benchmarks/, tools/) as a module."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from mlfuse.registry import get_card, list_models

#: the registered networks (classical methods have no weights, nothing to tile or optimise)
NETWORKS = [n for n in list_models() if get_card(n).needs_weights]


def load_script(path: Path) -> ModuleType:
    """A stand-alone script (not a package module) imported by path, for testing its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_thread_fixture():
    """An autouse, module-scoped fixture running the module with one intra-op thread. On the shared, loaded
    2-core machine two OpenMP threads competing with other processes made tests 5-20x slower (thousands of small
    tile ops each wait for the second thread to be scheduled); the references were also computed single-threaded.
    Tests of a parallel path raise the count themselves. Assign the result to a module-level name."""

    @pytest.fixture(autouse=True, scope="module")
    def _one_thread() -> Iterator[None]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)

    return _one_thread


def randomise_bn(model: nn.Module, seed: int = 0, bias: bool = True) -> nn.Module:
    """Non-trivial BatchNorm statistics, so an untrained network exercises every affine step: running mean and
    variance, weight and (with ``bias``) bias of every ``BatchNorm2d`` drawn from a generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if bias:
                m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model
