"""Micro models built in-process for the code-trainer tests (no download, seconds on CPU).

Shared by ``test_code_trainer.py`` (and the tests importing its fixtures) and
``accelerate_step.py`` (run under ``accelerate launch``), so that every
process and every test builds exactly the same tokenizer and Llama.
"""

from __future__ import annotations

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def micro_tokenizer(corpus: list[str], vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on ``corpus``, with ``<pad>`` and ``<eos>``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>"
    )


def micro_llama(tokenizer, seed: int = 0):
    """A randomly initialised 2-layer Llama of width 32 (seeded)."""
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return transformers.LlamaForCausalLM(cfg)
