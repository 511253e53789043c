"""A private, offline Hugging Face cache holding a tiny random "t5-base" (encoder + tokenizer).

Stable Audio Open's prompt conditioner is stable-audio-tools' ``T5Conditioner``, which loads
``AutoTokenizer.from_pretrained("t5-base")`` and ``T5EncoderModel.from_pretrained("t5-base")`` at
model construction. Tests cannot download the real 900 MB model, so this module plants a stand-in
with the one property the conditioner relies on (``d_model`` = 768, hard-coded for "t5-base") and
everything else tiny, laid out exactly as huggingface_hub's cache lays out a download, so that the
real resolution path (``HF_HOME`` -> ``hub/models--t5-base/refs/main`` -> snapshot) is exercised.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

MODEL_NAME = "t5-base"
#: T5Conditioner.T5_MODEL_DIMS["t5-base"]; the conditioner sizes its projection from this, not from the config
D_MODEL = 768
#: a fixed, fake commit hash: the cache keys snapshots by 40-hex revision
COMMIT = hashlib.sha1(b"tda-plugin tests: tiny random t5-base").hexdigest()

SPECIAL = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5 (pad_token_id=0, eos_token_id=1)
WORDS = ["low", "hum", "high", "beep", "x", "a", "the", "music", "drum", "bass", "piano", "song"]


def offline_env(hf_home: Path) -> dict[str, str]:
    """Environment for a subprocess that must resolve models from ``hf_home`` only, never the network.

    Starts from the current environment (PATH, virtualenv, thread settings) but drops any
    ``HF_*``/``TRANSFORMERS_*`` variables that could point at another cache.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TDA_NO_PROGRESS="1",
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    env.pop("TDA_DEBUG", None)  # errors must be rendered as the user sees them
    return env


def _tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer built from a fixed vocabulary: needs no download and no training data."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # like T5: every sequence ends with </s>
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                        special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def plant(hf_home: Path, seed: int = 0) -> Path:
    """Write the tiny "t5-base" into ``hf_home/hub`` as a cached download; returns the snapshot directory.

    Layout (that of huggingface_hub): ``hub/models--t5-base/snapshots/<commit>/{config.json,
    model.safetensors, tokenizer.json, tokenizer_config.json, ...}`` and ``refs/main`` holding
    ``<commit>``. Real caches keep blobs and symlink to them; plain files in the snapshot resolve
    identically and survive copying.
    """
    import torch
    from transformers import T5Config, T5EncoderModel

    repo = Path(hf_home) / "hub" / f"models--{MODEL_NAME}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)

    tokenizer = _tokenizer()
    config = T5Config(vocab_size=len(SPECIAL) + len(WORDS), d_model=D_MODEL, d_kv=16, d_ff=64, num_layers=1,
                      num_decoder_layers=1, num_heads=2, relative_attention_num_buckets=8,
                      relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)
    torch.manual_seed(seed)
    T5EncoderModel(config).save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    return snapshot


def check_loads(hf_home: Path) -> tuple[int, int]:
    """Load both halves back through the cache's own resolution (offline); returns (d_model, vocab size).

    ``cache_dir`` + ``local_files_only`` resolve ``refs/main`` -> snapshot exactly as ``HF_HOME`` +
    ``HF_HUB_OFFLINE`` do in a fresh process, without mutating this process's environment (which
    huggingface_hub reads once, at import).
    """
    from transformers import AutoTokenizer, T5EncoderModel

    hub = Path(hf_home) / "hub"
    tokenizer = AutoTokenizer.from_pretrained(MODEL_NAME, cache_dir=hub, local_files_only=True)
    model = T5EncoderModel.from_pretrained(MODEL_NAME, cache_dir=hub, local_files_only=True)
    ids = tokenizer(["low hum"], padding="max_length", max_length=8, truncation=True)["input_ids"][0]
    if ids[:3] != [len(SPECIAL) + WORDS.index("low"), len(SPECIAL) + WORDS.index("hum"), 1] or ids[3:] != [0] * 5:
        raise AssertionError(f"planted tokenizer encodes 'low hum' as {ids}")
    return int(model.config.d_model), len(tokenizer)


def plant_unigram(hf_home: Path) -> Path:
    """:func:`plant`, with the tokenizer rewritten as a Unigram model like the real t5-base's: audiocraft
    loads ``T5Tokenizer``, which reads only that kind. Returns the snapshot directory."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    snapshot = plant(hf_home)
    vocab = [(tok, 0.0) for tok in SPECIAL] + [("\u2581" + w, -1.0) for w in WORDS]  # "▁word": sentencepiece style
    tok = Tokenizer(Unigram(vocab, unk_id=2))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                        special_tokens=[("</s>", 1)])
    tok.save(str(snapshot / "tokenizer.json"))
    return snapshot


@contextlib.contextmanager
def offline_hub(hf_home: Path) -> Iterator[None]:
    """Resolve Hugging Face files from ``hf_home`` only, inside this process, while the block runs.

    huggingface_hub reads its cache directory and offline flag from ``huggingface_hub.constants`` at
    call time, so patching them is enough for models built inside the block (T5 loads at construction);
    a subprocess with :func:`offline_env` exercises the environment variables themselves.
    """
    import huggingface_hub.constants as constants

    saved = constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE
    constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(Path(hf_home) / "hub"), True
    try:
        yield
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved


def prompt_of(tokens: int) -> str | None:
    """A prompt that the tiny T5 tokenizes into exactly ``tokens`` tokens (words, then ``</s>``); 1: no prompt."""
    return " ".join(WORDS[k % len(WORDS)] for k in range(tokens - 1)) or None
