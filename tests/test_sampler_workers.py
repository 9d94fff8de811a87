"""CPU thread budget of the BiDA sampler: concurrent plane × sample jobs, same result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bida_app.device import cpu_workers, intraop_threads
from bida_app.diffusion.bida import super_resolve
from bida_app.models import PlaneModel, UNet, UNetConfig
from bida_app.physics import SliceOperator, make_profile


@pytest.fixture
def threads():
    """Set torch's thread count for a test and restore it afterwards."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


def test_cpu_workers_spend_the_budget_on_jobs_first(threads):
    cpu = torch.device("cpu")
    threads(1)
    assert cpu_workers(cpu, 2) == (1, 1)
    threads(2)
    assert cpu_workers(cpu, 2) == (2, 1)
    threads(8)
    assert cpu_workers(cpu, 2) == (2, 4)
    assert cpu_workers(cpu, 8) == (8, 1)
    assert cpu_workers(torch.device("cuda:1"), 8) == (1, 8)  # CUDA: serial, threads kept


def test_intraop_threads_restores_the_count(threads):
    threads(2)
    with pytest.raises(RuntimeError), intraop_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == 2


def test_concurrent_jobs_give_the_serial_result(threads):
    cfg = UNetConfig.preset("tiny")
    torch.manual_seed(0)
    models = {p: PlaneModel(p, UNet(cfg).eval(), cfg) for p in ("axial", "sagittal")}
    op = SliceOperator(20, np.arange(4) * 5 + 2.0, 0.2, make_profile("gaussian", 1.0), 1)
    lr = np.random.default_rng(0).uniform(-1, 1, (16, 4, 8)).astype(np.float32)
    runs = {}
    for n in (1, 3):
        threads(n)
        runs[n] = super_resolve(lr, op, models, steps=3, n_samples=2, eta=0.5, progress=False)
        assert torch.get_num_threads() == n
    assert (runs[1].params["Workers"], runs[3].params["Workers"]) == (1, 3)
    assert runs[3].params["ThreadsPerWorker"] == 1
    np.testing.assert_array_equal(runs[1].mean, runs[3].mean)
    np.testing.assert_array_equal(runs[1].std, runs[3].std)
    assert runs[3].std.max() > 0  # the two samples differ, so the order of jobs matters
