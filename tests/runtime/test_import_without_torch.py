import subprocess
import sys
import textwrap


def test_runtime_and_cli_import_with_torch_blocked():
    """A Jetson cart may have no torch: the runtime, the bundle reader and the CLI must not need it."""
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch.") or name == "torchvision":
                    raise ImportError("torch blocked for this test")
        sys.meta_path.insert(0, Block())
        import edge_bus.runtime, edge_bus.bundle, edge_bus.runtime.backends, edge_bus.cli
        import pkgutil, importlib, edge_bus.runtime as rt
        for mod in pkgutil.walk_packages(rt.__path__, "edge_bus.runtime."):
            importlib.import_module(mod.name)
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
