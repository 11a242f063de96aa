"""Tiny random transformer models saved to a folder, so the real ``from_pretrained`` paths run fast.

No masked LM with a useful MLM head is available offline; these have random weights: tests check
the code paths (shapes, vocabulary filtering, caching), not the answers.
"""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "money", "free", "prize", "winner", "click", "music", "song", "video", "love", "great",
    "cause", "effect", "part", "member", "product", "message", "content", "container", "origin",
    "destination", "instrument", "agency", "company", "people", "person", "number", "location",
    "the", "and", "about", "this", "text", "is", "of", "a", "in", "for", "to", "it",
]  # fmt: skip
PIECES = ["##s", "##ing", "##ed", "##er"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = [".", ",", "!", "?", '"', "'", ":", "-", "(", ")", "1", "2", "3", "42"]


def write_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(SPECIALS + PUNCT + WORDS + PIECES) + "\n", encoding="utf-8")
    return path


def _tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    tokens = write_vocab(folder).read_text(encoding="utf-8").split()
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def _config(vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **extra,
    )


def make_tiny_masked_lm(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer BertForMaskedLM + WordPiece tokenizer saved under ``folder``."""
    import torch
    from transformers import BertForMaskedLM

    tok = _tokenizer(folder)
    torch.manual_seed(seed)
    model = BertForMaskedLM(_config(len(tok)))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer BertModel encoder + tokenizer saved under ``folder``."""
    import torch
    from transformers import BertModel

    tok = _tokenizer(folder)
    torch.manual_seed(seed)
    model = BertModel(_config(len(tok)))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _bpe_tokenizer():
    """A byte-level BPE tokenizer ("Ġ" word starts, like SmolLM2's) trained on a few sentences."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    corpus = [
        f"{a} {b} {c} about the {d}."
        for a in WORDS
        for b, c, d in zip(WORDS[3:], WORDS[7:], WORDS[11:], strict=False)
    ]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus * 3,
        vocab_size=700,
        min_frequency=1,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_tiny_causal_lm(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama (GQA, rotary) + byte-level BPE tokenizer saved under ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _bpe_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
