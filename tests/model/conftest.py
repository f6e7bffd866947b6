"""The model tests run tiny models, which gain nothing from a second intra-op thread;
on a shared 2-core machine OpenMP threads spinning against other work made them up to
15x slower (the CLI tests do the same)."""

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def single_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
