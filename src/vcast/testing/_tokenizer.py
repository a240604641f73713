"""Byte-level tokenizers and chat templates for the tiny models, built in code (no files, no download)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

FIRST_SPECIAL_ID = 256  # ids 0..255 are the bytes


def special_ids(special_tokens: Sequence[str]) -> dict[str, int]:
    """``{token: id}`` of ``special_tokens`` as :func:`byte_tokenizer` numbers them (from 256, in order)."""
    return {tok: FIRST_SPECIAL_ID + i for i, tok in enumerate(special_tokens)}


def byte_id(char: str) -> int:
    """The id :func:`byte_tokenizer` gives the one-byte ``char`` (e.g. ``"\\n"``, which a config may name)."""
    from tokenizers import pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return sorted(pre_tokenizers.ByteLevel.alphabet()).index(bytes_to_unicode()[ord(char)])


def byte_tokenizer(special_tokens: Sequence[str], *, named: Mapping[str, str] | None = None,
                   eos: str | None = None, pad: str | None = None, bos: str | None = None):
    """A byte-level BPE ``PreTrainedTokenizerFast``: bytes are ids 0..255, then ``special_tokens`` from 256.

    Every byte is a token, so any prompt encodes and decodes losslessly. Padding is on the left
    (generation-ready).

    Args:
        special_tokens: the chat and multimodal special tokens, in id order.
        named: ``{attribute: token}`` exposed as ``tokenizer.<attribute>`` and ``tokenizer.<attribute>_id``
            (e.g. ``{"image_token": "<|image_pad|>"}``), as the family's processor reads them.
        eos, pad, bos: the eos / pad / bos tokens (default: eos = pad = the first special token).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(special_tokens))
    eos = eos or special_tokens[0]
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad or eos, bos_token=bos,
                                   padding_side="left", extra_special_tokens=dict(named or {}))


def chat_template(*, image: str, video: str, audio: str = "", turn: str = "<|im_start|>{role}\n",
                  end: str = "<|im_end|>\n", prefix: str = "") -> str:
    """A Jinja chat template: ``prefix``, then per message ``turn`` + content + ``end``, and the assistant turn.

    ``image`` / ``video`` / ``audio`` are the markup each content item of that type becomes (the processor
    then expands the placeholder inside it); ``{role}`` in ``turn`` is the message's role.
    """
    def lit(text: str) -> str:
        return text.replace("{role}", "' + message['role'] + '").join(("{{ '", "' }}")) if text else ""

    items = (f"{{% if item['type'] == 'image' %}}{lit(image)}"
             f"{{% elif item['type'] == 'video' %}}{lit(video)}"
             f"{{% elif item['type'] == 'audio' %}}{lit(audio)}"
             "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}")
    assistant = lit(turn).replace("' + message['role'] + '", "assistant")
    return (f"{lit(prefix)}{{% for message in messages %}}{lit(turn)}"
            "{% if message['content'] is string %}{{ message['content'] }}"
            f"{{% else %}}{{% for item in message['content'] %}}{items}{{% endfor %}}{{% endif %}}"
            f"{lit(end)}{{% endfor %}}{{% if add_generation_prompt %}}{assistant}{{% endif %}}")
