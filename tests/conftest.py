"""Test-wide settings: one intra-op thread per worker, since `make test` runs two xdist workers on two cores."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
