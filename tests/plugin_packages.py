"""Install the plugin packages kept under tests/ the way a user would, and activate them for a test module.

``pip install --no-deps --target DIR tests/plugin_example`` builds a real wheel (with its entry points
in a .dist-info), once per session; activating puts DIR on ``sys.path``, so ``importlib.metadata``
discovers the entry points exactly as in a site-packages, and removes it again afterwards. Nothing is
installed into the virtual environment itself, so other tests never see these plugins.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pytest

from tda_plugin import plugins

HERE = Path(__file__).parent
PACKAGES = {"example": (HERE / "plugin_example", "tda_example_plugin"),
            "broken": (HERE / "plugin_broken", "tda_broken_plugin")}


@lru_cache(maxsize=None)
def installed(name: str) -> Path:
    """Directory holding the installed package ``name`` (built once per session)."""
    source, _ = PACKAGES[name]
    target = Path(tempfile.mkdtemp(prefix=f"tda-{name}-plugin-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    build = Path(tempfile.mkdtemp(prefix="tda-plugin-src-"))  # build from a copy: leave tests/ clean
    atexit.register(shutil.rmtree, build, ignore_errors=True)
    shutil.copytree(source, build / source.name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(build / source.name)], check=True)
    return target


@contextlib.contextmanager
def activate(*names: str) -> Iterator[list[Path]]:
    """The packages are discoverable (in-process) inside the block."""
    dirs = [installed(n) for n in names]
    sys.path[:0] = [str(d) for d in dirs]
    importlib.invalidate_caches()
    plugins.get_plugin_manager.cache_clear()
    try:
        yield dirs
    finally:
        for d in dirs:
            sys.path.remove(str(d))
        for mod in [m for m in sys.modules if m.split(".")[0] in {PACKAGES[n][1] for n in names}]:
            del sys.modules[mod]
        importlib.invalidate_caches()
        plugins.get_plugin_manager.cache_clear()


@pytest.fixture(scope="module")
def example_plugin() -> Iterator[Path]:
    """The example package, installed and discoverable; yields its install directory."""
    with activate("example") as dirs:
        yield dirs[0]


@pytest.fixture(scope="module")
def broken_plugins() -> Iterator[Path]:
    with activate("broken") as dirs:
        yield dirs[0]
