"""Pool shapes: the one table of how instruction pools lay out their records, and ADG's canonical
record that every shape maps onto.

    shape              the pool's fields → ADG's                            detected by
    alpaca             instruction, input, output (+ system, history:       instruction
                       LLaMA-Factory's [[query, response], ...] pairs)
    dolly              instruction, context → input, response → output      instruction + response,
                                                                            no output
    prompt-completion  prompt → instruction, completion → output (TRL;      prompt + completion
                       lists of {role, content} are a conversation)
    sharegpt           conversations: [{from, value}], from human|user,     conversations
                       gpt|assistant, system (+ a system field)
    messages           messages: [{role, content}], role user|assistant|    messages
                       system (OpenAI; TRL, axolotl)

`SHAPES` holds that table; detection tries its rows in order on a file's first record (a
Parquet file's columns), so a record that has `instruction` is read as it always was, and a file
no row matches is read as alpaca (its records are then rejected naming the missing field).
`--format` picks a shape for every file and `--columns instruction=question,...` renames any of
a shape's fields (alone, it renames alpaca's).

A conversation is scored on its **last assistant turn**, the paper's single-turn definition
carried over: the instruction is what the user asked last, the answer the assistant gave to it,
and everything said before (the system prompt and earlier turns) is context the K answers are
sampled under (the model's chat template renders it). The canonical record keeps `instruction`
(the last user turn), `input` ("" unless the shape has context), `output` (the last assistant
turn), `system` and `history` (the earlier turns as [{"role": "user"|"assistant", "content"}]).
A conversation must end in an assistant turn that answers a user turn; a system turn may only
open it. Anything else is a reject naming the turn.

`canonical_content` is what a record's results depend on (instruction, input, output, system,
history); the curation index hashes it (`content_text`), so the same conversation read from two
shapes is one record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from adg.config import POOL_FORMATS
from adg.errors import InputError

USER, ASSISTANT, SYSTEM = "user", "assistant", "system"
# ADG's fields of a single-turn record, in the order a canonical record lists them.
SINGLE_TURN = ("id", "instruction", "input", "output", "system", "history")
# The fields a record's results depend on (generation, embedding, scoring).
CONTENT_FIELDS = ("instruction", "input", "output", "system", "history")


@dataclass(frozen=True)
class Shape:
    """One row of the table: ADG's field → the pool's field, and how the shape is recognised.

    Single-turn shapes map `instruction`, `input`, `output` (and `system`, `history`) directly;
    conversation shapes name the list of turns (`turns`), the keys of a turn (`role`, `content`)
    and the roles (`roles`: the pool's role name → user, assistant or system).
    """

    name: str
    fields: dict[str, str]
    present: tuple[str, ...]  # pool fields a record of this shape has (detection)
    absent: tuple[str, ...] = ()  # pool fields it does not have
    turns: str = ""  # conversation shapes: the ADG key of the list of turns
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def conversation(self) -> bool:
        return bool(self.turns)


OPENAI_ROLES = {"user": USER, "assistant": ASSISTANT, "system": SYSTEM}
SHAREGPT_ROLES = {"human": USER, "user": USER, "gpt": ASSISTANT, "assistant": ASSISTANT}
SHAREGPT_ROLES["system"] = SYSTEM

SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape(
            "dolly",
            {"id": "id", "instruction": "instruction", "input": "context", "output": "response"},
            present=("instruction", "response"),
            absent=("output",),
        ),
        Shape(
            "alpaca",
            {k: k for k in SINGLE_TURN},
            present=("instruction",),
        ),
        Shape(
            "prompt-completion",
            {"id": "id", "instruction": "prompt", "output": "completion"},
            present=("prompt", "completion"),
        ),
        Shape(
            "sharegpt",
            {"id": "id", "conversations": "conversations", "role": "from", "content": "value"}
            | {"system": "system"},
            present=("conversations",),
            turns="conversations",
            roles=SHAREGPT_ROLES,
        ),
        Shape(
            "messages",
            {"id": "id", "messages": "messages", "role": "role", "content": "content"}
            | {"system": "system"},
            present=("messages",),
            turns="messages",
            roles=OPENAI_ROLES,
        ),
    )
}
assert set(SHAPES) == set(POOL_FORMATS) - {"auto"}, "adg.config.POOL_FORMATS and SHAPES differ"


@dataclass(frozen=True)
class Reading:
    """How one file is read: its shape, the names of its fields, and how the shape was chosen."""

    shape: Shape
    names: dict[str, str]  # ADG field → the pool's field (the shape's, with --columns applied)
    how: str = "detected"  # detected | given | default

    def describe(self) -> str:
        renamed = {k: v for k, v in self.names.items() if self.shape.fields.get(k) != v}
        text = f"{self.shape.name} shape"
        notes = [] if self.how == "detected" else [f"{self.how}"]
        if renamed:
            notes.append("columns " + ",".join(f"{k}={v}" for k, v in renamed.items()))
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def pool_name(self, adg_field: str) -> str:
        """The pool's name of an ADG field (for messages that name the user's own columns)."""
        return self.names.get(adg_field, adg_field)


def parse_columns(text: str) -> dict[str, str]:
    """`instruction=question,input=context` → {"instruction": "question", "input": "context"}."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key or not value:
            raise InputError(f"--columns: {part!r} is not ADG_FIELD=POOL_FIELD")
        out[key] = value
    return out


def _with_columns(shape: Shape, columns: dict[str, str], how: str) -> Reading:
    unknown = [k for k in columns if k not in shape.fields]
    if unknown:
        raise InputError(
            f"--columns: {unknown[0]!r} is not a field of the {shape.name} shape "
            f"({', '.join(shape.fields)})"
        )
    return Reading(shape, {**shape.fields, **columns}, how)


def detect(keys: Iterable[str]) -> Shape | None:
    """The first shape of the table whose fields a record (or a table's columns) has."""
    have = set(keys)
    for shape in SHAPES.values():
        if all(k in have for k in shape.present) and not any(k in have for k in shape.absent):
            return shape
    return None


def reading(fmt: str, columns: dict[str, str], keys: Iterable[str] | None) -> Reading:
    """How to read a file: `fmt` ("auto" or a shape name), `columns` (parsed --columns) and the
    fields of its first record (`keys`; None when it has no object to look at)."""
    if fmt not in POOL_FORMATS:
        raise InputError(f"unknown pool format {fmt!r}; choose one of {', '.join(POOL_FORMATS)}")
    if fmt != "auto":
        return _with_columns(SHAPES[fmt], columns, "given")
    if columns:
        # Alone, --columns renames alpaca's fields, unless it names a conversation's turns.
        for shape in SHAPES.values():
            if shape.turns and shape.turns in columns:
                return _with_columns(shape, columns, "given by --columns")
        return _with_columns(SHAPES["alpaca"], columns, "given by --columns")
    found = detect(keys) if keys is not None else None
    if found is None:
        return Reading(SHAPES["alpaca"], dict(SHAPES["alpaca"].fields), "default")
    return Reading(found, dict(found.fields), "detected")


def check_options(fmt: str, columns: str) -> None:
    """Refuse a bad --format or --columns before any file is read."""
    reading(fmt, parse_columns(columns), None)


# --- one record → the canonical record ---------------------------------------------------------


def to_canonical(obj: dict[str, Any], how: Reading, nulls_absent: bool = False) -> dict[str, Any]:
    """ADG's record for one record of the pool (a ValueError saying why when it does not fit).

    Keys keep their order; renamed fields take their place, other fields are carried through.
    `nulls_absent`: a null optional field counts as missing (a columnar file has every column
    in every row). Validating the values is `adg.io.records.validate_record`'s job.
    """
    names = how.names
    if how.shape.conversation:
        return _conversation(obj, how, obj.get(names[how.shape.turns]), names[how.shape.turns])
    prompt = obj.get(names["instruction"])
    if how.shape.name == "prompt-completion" and isinstance(prompt, list):
        # TRL's conversational prompt-completion: both are lists of {role, content} messages.
        completion = obj.get(names["output"])
        turns = prompt + completion if isinstance(completion, list) else completion
        conv = Reading(SHAPES["messages"], {**SHAPES["messages"].fields, "id": names["id"]})
        out = _conversation(obj, conv, turns, f"{names['instruction']} + {names['output']}")
        return {k: v for k, v in out.items() if k not in (names["instruction"], names["output"])}
    plain = how.shape.name == "alpaca" and how.names == how.shape.fields
    if plain and not nulls_absent and "history" not in obj:
        return obj  # ADG's own shape, nothing renamed: the record as it is (the common case)
    source = {pool: adg for adg, pool in names.items()}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        adg = source.get(key)
        if adg is None:
            if key not in names:  # an ADG name that another of the pool's fields provides
                out[key] = value
            continue
        if value is None and nulls_absent and adg != "instruction":
            continue
        out[adg] = _pairs(value, key) if adg == "history" else value
    return out


def _pairs(value: Any, name: str) -> Any:
    """LLaMA-Factory's alpaca `history`, [[query, response], ...], as turns."""
    if not isinstance(value, list):
        return value  # validation names the field
    turns = []
    for n, pair in enumerate(value, start=1):
        if isinstance(pair, dict):  # already turns (an ADG file)
            turns.append(pair)
            continue
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ValueError(f"field '{name}': item {n} is not a [query, response] pair")
        turns += [{"role": USER, "content": pair[0]}, {"role": ASSISTANT, "content": pair[1]}]
    return turns


def _text(content: Any) -> str | None:
    """A turn's text: a string, or OpenAI's list of {"type": "text", "text"} parts (joined)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) and content else []
    if parts and all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        texts = [p.get("text") for p in parts]
        if all(isinstance(t, str) for t in texts):
            return "\n".join(texts)
    return None


def _conversation(obj: dict[str, Any], how: Reading, turns: Any, where: str) -> dict[str, Any]:
    """The conversation rule (module docstring) applied to one record's list of turns."""
    names, shape = how.names, how.shape
    if turns is None:
        raise ValueError(f"field '{where}': missing")
    if not isinstance(turns, list):
        raise ValueError(f"field '{where}': expected a list of turns, got {type(turns).__name__}")
    role_key, content_key = names["role"], names["content"]
    said: list[tuple[str, str]] = []
    for n, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise ValueError(f"field '{where}': turn {n} is not an object")
        role = turn.get(role_key)
        mapped = shape.roles.get(role) if isinstance(role, str) else None
        if mapped is None:
            known = "|".join(shape.roles)
            raise ValueError(f"field '{where}': turn {n}: '{role_key}' {role!r} is not {known}")
        text = _text(turn.get(content_key))
        if text is None:
            raise ValueError(f"field '{where}': turn {n}: '{content_key}' is not text")
        if mapped == SYSTEM and n > 1:
            raise ValueError(f"field '{where}': turn {n}: a system turn after the first")
        said.append((mapped, text))
    system_field = names.get("system")
    system = obj.get(system_field) if system_field else None
    if said and said[0][0] == SYSTEM:
        if system not in (None, ""):
            raise ValueError(f"field '{where}': a system turn and a '{system_field}' field both")
        system = said.pop(0)[1]
    if system is not None and not isinstance(system, str):
        raise ValueError(f"field '{system_field}': expected a string")
    if not any(role == USER for role, _ in said):
        raise ValueError(f"field '{where}': no user turn")
    if said[-1][0] != ASSISTANT:
        raise ValueError(f"field '{where}': does not end in an assistant turn (nothing to score)")
    if len(said) < 2 or said[-2][0] != USER:
        raise ValueError(f"field '{where}': the last assistant turn does not answer a user turn")
    if not said[-2][1].strip():
        raise ValueError(f"field '{where}': turn {len(turns) - 1}: the last user turn is empty")
    out: dict[str, Any] = {}
    id_field = names.get("id", "id")
    if obj.get(id_field) is not None:
        out["id"] = obj[id_field]
    out.update(
        instruction=said[-2][1],
        input="",
        output=said[-1][1],
        system=system or "",
        history=[{"role": role, "content": text} for role, text in said[:-2]],
    )
    skip = {where, id_field, system_field, *out}
    out.update((k, v) for k, v in obj.items() if k not in skip)
    return out


# --- what a record's results depend on ---------------------------------------------------------


def canonical_content(record: dict[str, Any]) -> dict[str, Any]:
    """The fields a record's generated answers, vectors and scores depend on, normalised: the
    strings instruction, input, output, system ("" when absent) and history ([] when absent).

    The one definition of "the same record" for content hashing (the curation index) and
    per-record input hashes; two shapes of one conversation give the same dict.
    """
    out: dict[str, Any] = {f: record.get(f) or "" for f in CONTENT_FIELDS if f != "history"}
    out["history"] = [
        {"role": t.get("role"), "content": t.get("content")} for t in record.get("history") or []
    ]
    return out


def content_text(record: dict[str, Any]) -> str:
    """`canonical_content` as one string to hash. A single-turn record without a system prompt
    gives instruction, input and output joined by U+001F, as indexes made before conversations
    existed hashed them; system and history are appended only when present."""
    c = canonical_content(record)
    text = "\x1f".join(str(c[f]) for f in ("instruction", "input", "output"))
    if c["system"] or c["history"]:
        history = json.dumps(c["history"], ensure_ascii=False, separators=(",", ":"))
        text += f"\x1f{c['system']}\x1f{history}"
    return text


def has_context_turns(record: dict[str, Any]) -> bool:
    """Whether a record carries a system prompt or earlier turns (the Alpaca prompt has no room
    for either)."""
    return bool(record.get("system") or record.get("history"))


def chat_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation up to the turn to answer: system prompt, earlier turns, and the user's
    request (instruction, then `input` after a blank line when there is one)."""
    content = record["instruction"]
    extra = record.get("input") or ""
    if extra.strip():
        content = f"{content}\n\n{extra}"
    messages = [{"role": SYSTEM, "content": record["system"]}] if record.get("system") else []
    messages += [{"role": t["role"], "content": t["content"]} for t in record.get("history") or []]
    return [*messages, {"role": USER, "content": content}]
