"""Every reader of an edge-bus JSON file answers a bad file with one line naming it, in its own
error class: missing, a folder, not text, not JSON. (One helper, fileio.read_json, does the reading.)"""

from __future__ import annotations

import importlib

import pytest

from edge_bus.errors import BundleError, CheckpointError, ConfigError, DataError

READERS = [  # module, function, error class; the torch-free ones first
    ("edge_bus.data.split", "load_split", DataError),
    ("edge_bus.comparison", "read_report", ConfigError),
    ("edge_bus.bundle", "read_manifest", BundleError),
    ("edge_bus.engine_cache", "read_record", BundleError),
    ("edge_bus.exporting.parity", "read_parity", BundleError),
    ("edge_bus.exporting.recipe", "load_recipe", ConfigError),
    ("edge_bus.models.classical", "load_classical", CheckpointError),
    ("edge_bus.models.ensemble", "load_ensemble", CheckpointError),
    ("edge_bus.training.evaluate", "load_any", CheckpointError),
    ("edge_bus.exporting.source", "from_file", CheckpointError),
]
BAD_FILES = {
    "not_text.json": b"\xff\xfe\x00\x81 binary \x9c",
    "broken.json": b'{"format": "edge-bus", ',
}


def _reader(module, name):
    if module.startswith(("edge_bus.training", "edge_bus.models", "edge_bus.exporting.source")):
        pytest.importorskip("torch")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module, name, error", READERS, ids=[r[1] for r in READERS])
@pytest.mark.parametrize("case", ["not_text.json", "broken.json", "missing.json", "folder.json"])
def test_bad_json_files_give_one_line_naming_the_file(tmp_path, module, name, error, case):
    read = _reader(module, name)
    path = tmp_path / case
    if case in BAD_FILES:
        path.write_bytes(BAD_FILES[case])
    elif case == "folder.json":
        path.mkdir()
    with pytest.raises(error) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    if case == "not_text.json":
        assert "UTF-8" in message or "not valid" in message, message
    if case == "broken.json":
        assert "line 1" in message, message
