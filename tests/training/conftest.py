from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
# The test machine's cores are shared; one thread avoids oversubscription stalls.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_split(synthetic_busi, tmp_path_factory):
    from edge_bus.data.busi import index_busi
    from edge_bus.data.split import make_split, write_split

    path = tmp_path_factory.mktemp("split") / "split.json"
    write_split(make_split(index_busi(synthetic_busi), seed=0), path)
    return path


@pytest.fixture(scope="session")
def synthetic_pack(synthetic_busi, synthetic_split, tmp_path_factory):
    """The phantom data set packed at 64 px."""
    from edge_bus.data.pack import pack_split
    from edge_bus.data.split import load_split

    return pack_split(load_split(synthetic_split), synthetic_busi, tmp_path_factory.mktemp("pack") / "pack.npz", size=64)


@pytest.fixture(scope="session")
def trained_unets(synthetic_pack, tmp_path_factory):
    """Two tiny U-Nets trained briefly with different seeds: (result seed 0, result seed 1)."""
    from edge_bus.training.loop import TrainConfig, train

    results = []
    for seed in (0, 1):
        out = tmp_path_factory.mktemp(f"unet{seed}")
        cfg = TrainConfig(model="unet", pack=synthetic_pack, out=out, epochs=5, batch_size=2, lr=3e-3, device="cpu",
                          seed=seed, model_kwargs={"width": 4}, progress=False)
        results.append(train(cfg))
    return results
