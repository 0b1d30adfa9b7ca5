"""The pre-trained model named in params.model: its tokenizer and its length limit."""

from __future__ import annotations

from typing import Any

from tunepipe import assets
from tunepipe.errors import PipelineError
from tunepipe.params import Params


def load_tokenizer(p: Params, path: str | None = None) -> Any:
    from transformers import AutoConfig, AutoTokenizer

    name = path or assets.resolve_model(p.model.name, p.model.trust_remote_code, p.model.revision)
    kwargs = {"revision": p.model.revision, "trust_remote_code": p.model.trust_remote_code}
    tok = AutoTokenizer.from_pretrained(name, use_fast=True, **kwargs)
    if not tok.is_fast:
        raise PipelineError(f"model {p.model.name}: no fast tokenizer available")
    # A directory without tokenizer files yields an empty tokenizer instead of an error.
    vocab_size = getattr(AutoConfig.from_pretrained(name, **kwargs), "vocab_size", None)
    if len(tok) < 10 or (vocab_size and len(tok) > vocab_size * 2):
        raise PipelineError(
            f"model {p.model.name}: tokenizer has {len(tok)} tokens but the model expects "
            f"{vocab_size}; are the tokenizer files missing?"
        )
    return tok


def effective_max_length(p: Params, tok: Any) -> int:
    """tokenize.max_length, capped by what the tokenizer and the model's position table allow."""
    from transformers import AutoConfig

    name = assets.resolve_model(p.model.name, p.model.trust_remote_code, p.model.revision)
    config = AutoConfig.from_pretrained(
        name, revision=p.model.revision, trust_remote_code=p.model.trust_remote_code
    )
    limits = [p.tokenize.max_length, getattr(config, "max_position_embeddings", None)]
    if tok.model_max_length < 1_000_000:  # tokenizers without a limit report 1e30
        limits.append(tok.model_max_length)
    known = [n for n in limits if n]
    if not known:
        raise PipelineError(f"model {p.model.name}: no length limit known; set tokenize.max_length")
    return min(known)
