"""What every audiocraft module shares: audiocraft imported lazily and quietly (or one line saying what to
install), and the file names of an exported checkpoint directory.

The LM adapter (:mod:`.audiocraft`), the MultiBandDiffusion adapter (:mod:`.audiocraft_mbd`), the demo and
generation all import this module, which imports none of them.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from types import SimpleNamespace
from typing import Iterator

from tda_plugin.errors import import_failure

REQUIREMENT = "pip install --no-deps audiocraft==1.3.0 xformers, then the packages of README: Install"
LM_FILE, COMPRESSION_FILE = "state_dict.bin", "compression_state_dict.bin"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """xformers and audiocraft print and warn on import and on model construction."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def toolkit() -> SimpleNamespace:
    """Import the pieces of audiocraft the adapter uses, or say in one line what to install."""
    try:
        with quiet():
            import audiocraft.models.builders as builders
            import audiocraft.models.loaders as loaders
            from audiocraft.models.lm_magnet import MagnetLMModel
            from audiocraft.modules import conditioners
            from audiocraft.modules.transformer import set_efficient_attention_backend
    except ImportError as exc:
        raise import_failure(exc, "audiocraft", "audiocraft", REQUIREMENT) from None
    return SimpleNamespace(builders=builders, loaders=loaders, MagnetLMModel=MagnetLMModel, conditioners=conditioners,
                           set_efficient_attention_backend=set_efficient_attention_backend)
