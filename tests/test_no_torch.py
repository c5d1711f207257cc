"""The robot side never imports torch: import it, load an artifact and answer a frame with torch blocked."""

import subprocess
import sys
import textwrap

from tests.conftest import REPO

BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, _NoTorch())
""")


def _run(code: str):
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_blocker_works():
    r = _run("import torch")
    assert r.returncode != 0 and "torch is blocked" in r.stderr


def test_runtime_packages_import_and_run_without_torch(tiny_artifact):
    r = _run(f"""
        import pkgutil, importlib, numpy as np
        import edge, engines, ros_bridge
        for pkg in (edge, engines, ros_bridge):
            for mod in pkgutil.iter_modules(pkg.__path__):
                importlib.import_module(pkg.__name__ + "." + mod.name)
        from edge.runtime import Runtime
        rt = Runtime.load({str(tiny_artifact)!r})
        ans = rt.open_stream("cam").ask(np.zeros((48, 64, 3), np.uint8), "hi", max_new_tokens=3)
        assert "torch" not in sys.modules
        print("ok", len(ans.token_ids))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


def test_export_without_torch_is_a_clear_error(tmp_path):
    r = _run(f"""
        from edge.cli import main
        sys.exit(main(["export", "--preset", "tiny", "--out", {str(tmp_path / "x")!r}]))
    """)
    assert r.returncode != 0 and "needs the export extra" in (r.stderr + r.stdout)
