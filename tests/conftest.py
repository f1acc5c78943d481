import os

import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless rendering


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)
