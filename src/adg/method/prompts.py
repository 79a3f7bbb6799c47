"""Prompt templates: the Alpaca prompt (with and without `input`) and the model's chat template.

The Alpaca prompt is the one the published recipe trains and samples with; the `input` field is
used when present (the original sampler dropped it). `chat` renders the conversation up to the
turn to answer in the tokenizer's own chat template, for instruction-tuned backbones: the system
prompt and earlier turns of a conversation (`system`, `history`, see `adg.io.shapes`), then the
request as the last user turn. The Alpaca prompt has no place for a system prompt or earlier
turns: a record with either is refused (`check_prompt_format`), never silently cut down.

`auto` (the default everywhere) is resolved ONCE per pool, before any model work
(`resolve_prompt_format`): a pool in which any record has a system prompt or earlier turns is
rendered with the chat template throughout; a pool of plain single-turn records with the Alpaca
prompt, as the paper does. One run never mixes two formats: ADG compares the K answers' spread
between records of one bin, and IFD and Superfiltering compare loss ratios between records, so
every record of a pool must be conditioned on the same kind of prompt (a per-record rule would
rank chat-rendered records against Alpaca-rendered ones). The pipeline resolves it in the
`curation_route` task, right after ingest and before any GPU pod, and hands the concrete format to
generate, score, train and the curation index's settings, so every shard (which sees only part of
the pool), a resumed task and an index entry carry the same one. A `chat` pool with a model that
has no chat template is refused there, in one line naming the first record that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from adg.errors import InputError
from adg.io.shapes import chat_messages, has_context_turns

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
AUTO = "auto"


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
            "alpaca prompt has no place for them: use --prompt-format auto or chat "
            "(pipeline: generate_prompt_format=auto)"
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
    if prompt_format == AUTO:  # one format per pool: generate_file and score_file decide it first
        raise InputError(
            "prompt format 'auto' is decided for the whole pool before prompts are built "
            "(resolve_for_file); give a sampler or scorer called directly 'alpaca' or 'chat'"
        )
    raise InputError(f"unknown prompt format {prompt_format!r}; choose one of {PROMPT_FORMATS}")


def first_needing_chat(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The first record with a system prompt or earlier turns (None: every one is plain)."""
    return next((r for r in records if has_context_turns(r)), None)


def resolve_prompt_format(
    requested: str,
    records: Iterable[dict[str, Any]],
    has_chat_template: Callable[[], bool],
    model: str = "",
) -> str:
    """The concrete format of a pool: `alpaca` or `chat` as asked, or for `auto` chat when any
    record needs it and alpaca otherwise (see the module doc). Refuses, in one line naming the
    record, a pool the format cannot render: a conversation under `alpaca`, or chat without a
    chat template. `has_chat_template` is asked only when chat is the answer."""
    if requested not in (AUTO, *PROMPT_FORMATS):
        raise InputError(
            f"unknown prompt format {requested!r}; choose one of {(AUTO, *PROMPT_FORMATS)}"
        )
    needing = first_needing_chat(records) if requested != "chat" else None
    if requested == "alpaca":
        if needing is not None:
            check_prompt_format(needing, "alpaca")
        return "alpaca"
    if requested == AUTO and needing is None:
        return "alpaca"
    if not has_chat_template():
        named = model or "the embedded model"
        if needing is None:
            raise InputError(
                f"prompt format chat: model {named} has no chat template; use prompt format "
                "alpaca or auto, or a model with a chat template"
            )
        what = "earlier turns" if needing.get("history") else "a system prompt"
        raise InputError(
            f"record {needing.get('id')!r}: a conversation with {what} needs the model's chat "
            f"template (prompt format auto), and model {named} has none: give a model with a "
            "chat template, or drop the conversations from the pool"
        )
    return "chat"


def resolve_for_file(requested: str, path: Any, model: str | None, tokenizer=None) -> str:
    """`resolve_prompt_format` over the records of a pool file (every one, not a shard's: the
    format is the pool's). The model's template is read from `tokenizer` when one is loaded,
    else from the model's files (`adg.io.models.has_chat_template`)."""
    from adg.io.reading import iter_records

    def template() -> bool:
        if tokenizer is not None:
            return bool(getattr(tokenizer, "chat_template", None))
        from adg.io.models import has_chat_template

        return has_chat_template(model)

    return resolve_prompt_format(requested, iter_records(path), template, str(model or ""))
