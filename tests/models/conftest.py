import pytest

torch = pytest.importorskip("torch")
# The test machine's cores are shared; one thread avoids oversubscription stalls.
torch.set_num_threads(1)
