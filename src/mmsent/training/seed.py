"""Seeding every random number generator a run touches."""

from __future__ import annotations

import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA) and turns off cuDNN autotuning.

    On CPU this makes training bit-for-bit repeatable. Full CUDA determinism (``use_deterministic_algorithms``)
    is left off: it slows some kernels and raises on others, for differences far below seed-to-seed spread.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
