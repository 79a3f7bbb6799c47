"""Prompt templates: the Alpaca prompt (with and without `input`) and the model's chat template.

The Alpaca prompt is the one the published recipe trains and samples with; the `input` field is
used when present (the original sampler dropped it). `chat` renders the conversation up to the
turn to answer in the tokenizer's own chat template, for instruction-tuned backbones: the system
prompt and earlier turns of a conversation (`system`, `history`, see `adg.shapes`), then the
request as the last user turn. The Alpaca prompt has no place for a system prompt or earlier
turns: a record with either is refused (`check_prompt_format`), never silently cut down.
"""

from __future__ import annotations

from typing import Any

from adg.errors import InputError
from adg.shapes import chat_messages, has_context_turns

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

PROMPT_FORMATS = ("alpaca", "chat")


def alpaca_prompt(record: dict[str, Any]) -> str:
    instruction = record["instruction"]
    extra = record.get("input") or ""
    if extra.strip():
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=extra)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def chat_prompt(record: dict[str, Any], tokenizer) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("--prompt-format chat needs a tokenizer with a chat template")
    return tokenizer.apply_chat_template(
        chat_messages(record), tokenize=False, add_generation_prompt=True
    )


def check_prompt_format(record: dict[str, Any], prompt_format: str, where: str = "") -> None:
    """Refuse, in one line, a record the prompt format cannot render whole."""
    if prompt_format == "alpaca" and has_context_turns(record):
        what = "earlier turns" if record.get("history") else "a system prompt"
        raise InputError(
            f"{where or 'record ' + repr(record.get('id'))}: a conversation with {what}; the "
            "alpaca prompt has no place for them: use --prompt-format chat "
            "(pipeline: generate_prompt_format=chat)"
        )


def adds_special_tokens(prompt_format: str) -> bool:
    """Whether a prompt's text is tokenized with the tokenizer's special tokens.

    An Alpaca prompt is plain text: it gets the BOS a tokenizer adds (Llama-style ones do), exactly
    as `adg train` encodes it. A chat template already writes its own special tokens.
    """
    return prompt_format == "alpaca"


def build_prompt(record: dict[str, Any], prompt_format: str, tokenizer=None) -> str:
    if prompt_format == "alpaca":
        check_prompt_format(record, prompt_format)
        return alpaca_prompt(record)
    if prompt_format == "chat":
        return chat_prompt(record, tokenizer)
    raise InputError(f"unknown prompt format {prompt_format!r}; choose one of {PROMPT_FORMATS}")
