"""Pooled, content-weighted hidden-state vectors from a causal LM, computed in batches.

For a text, the hidden states of layers (-4, -3, -2) of the model's `hidden_states` tuple (which
starts with the embedding output) are averaged per token; each token gets a content weight from
its id alone (see `token_weight`), the weighted mean over tokens is L2-normalised:

    h_t = mean(hs[-4][t], hs[-3][t], hs[-2][t])       [H]
    v   = Σ_t w(id_t) h_t / Σ_t w(id_t);   v ← v / ‖v‖

Entry -2 of that tuple is the output of the second-to-last decoder layer, so the last layer, the
final norm and the LM head are never run: a forward hook stops the pass once the deepest needed
layer has produced its output. Weights come from a per-vocabulary lookup table computed once.

Batching: texts are tokenized once, sorted by length, and the sorted list is cut into the
contiguous batches that minimise Σ (rows × longest + overhead): the padded tokens computed plus a
fixed cost per forward pass, in token equivalents, which is small on CPU (padding is what costs)
and large on GPU (kernel launches are what cost). A dynamic programme over the cut points finds
the optimum, so real answer lengths (10 to ~500 tokens, heavily skewed) cost what they hold, not
rows × the longest row (bench/score.py measures both). Rows are right-padded and no attention mask
is passed: under causal attention a real token never sees a later position, so the pads change
nothing it computes (position ids count from 0 either way), and the mask-free causal path is the
faster kernel. Padding carries zero weight, so one batched pass equals the per-text definition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from adg.errors import InputError

LAYERS = (-4, -3, -2)
# Fixed cost of one forward pass in token equivalents, by device type (bench/score.py: on CPU a
# batched pass costs little beyond its tokens; on an H200 a pass of SmolLM2 costs ~5 ms of kernel
# launches, ~2000 tokens' worth of compute).
BATCH_OVERHEAD_TOKENS = {"cpu": 32, "cuda": 2048}
_PUNCT_ONLY = re.compile(r"[\s,.;:!?()\[\]{}\"'`~\-_/\\]+")
# The published rule. In Python's `re`, \d is a decimal digit (Unicode category Nd): digits of
# any script count, but ², ½ and ① do not (SmolLM2's vocabulary has ² and ³ as tokens of their own).
_NUMERIC = re.compile(r"[\d%℃°]")
NUMERIC_WEIGHT = 1.3


def token_weight(piece: str) -> float:
    """Content weight of one decoded token: 0 for empty/punctuation, 1.3 for numbers, else 1."""
    s = piece.strip()
    if not s or _PUNCT_ONLY.fullmatch(s):
        return 0.0
    if _NUMERIC.search(s):
        return NUMERIC_WEIGHT
    return 1.0


def content_weight_table(tokenizer) -> np.ndarray:
    """float32 [vocab]: `token_weight` of every id decoded alone."""
    n = len(tokenizer)
    pieces = tokenizer.batch_decode([[i] for i in range(n)])
    return np.array([token_weight(p) for p in pieces], dtype=np.float32)


class _Stop(Exception):
    """Raised by the hook on the deepest needed layer to end the forward pass there."""


def decoder_layers(model):
    """The list of decoder blocks of a HF causal LM (Llama, Qwen, Mistral, GPT-2 style...)."""
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model
    for name in ("layers", "h", "blocks"):
        layers = getattr(backbone, name, None)
        if layers is not None:
            return backbone, layers
    raise InputError(f"cannot find the decoder layers of {type(model).__name__}")


class HiddenStateEncoder:
    """Encodes texts into pooled vectors with one model; reuse it (the table is built once)."""

    def __init__(
        self,
        tokenizer,
        model,
        layers: Sequence[int] = LAYERS,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 64,
        batch_overhead_tokens: int | None = None,
    ):
        import torch

        self.tokenizer = tokenizer
        self.model = model
        self.layers = tuple(layers)
        self.backbone, blocks = decoder_layers(model)
        n_layers = len(blocks)
        # hidden_states[j] (j >= 1) is the output of block j-1; negative j counts from n_layers + 1.
        self.block_ids = [(n_layers + 1 + j if j < 0 else j) - 1 for j in layers]
        if min(self.block_ids) < 0:
            raise InputError(f"model has {n_layers} layers; layers {tuple(layers)} need more")
        self.blocks = blocks
        self.device = next(model.parameters()).device
        self.weights = torch.from_numpy(content_weight_table(tokenizer)).to(self.device)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        if batch_overhead_tokens is None:
            batch_overhead_tokens = BATCH_OVERHEAD_TOKENS.get(self.device.type, 32)
        self.batch_overhead_tokens = batch_overhead_tokens
        # Tokens really computed: real ones, and real + padding (the benchmark reports the ratio).
        self.real_tokens = 0
        self.padded_tokens = 0

    def tokenize(self, texts: Sequence[str], add_special_tokens: bool, max_length: int):
        enc = self.tokenizer(
            list(texts),
            add_special_tokens=add_special_tokens,
            truncation=True,
            max_length=max_length,
        )
        return enc["input_ids"]

    def _batches(self, lengths: np.ndarray) -> list[list[int]]:
        """Index batches over the texts sorted by length (longest first), cut where the total
        cost Σ (rows × longest + `batch_overhead_tokens`) is least, within `max_batch_tokens`
        padded tokens (unless one text alone is longer) and `max_batch_size` rows.

        best[j] is the least cost of the first j sorted texts; a batch [i, j) has width L[i].
        """
        order = np.argsort(-lengths, kind="stable")
        widths = lengths[order].tolist()
        n = len(widths)
        best = [0.0] + [float("inf")] * n
        start = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j - 1, max(-1, j - 1 - self.max_batch_size), -1):
                padded = (j - i) * widths[i]
                if padded > self.max_batch_tokens and j - i > 1:
                    break  # earlier starts are wider and longer still
                cost = best[i] + padded + self.batch_overhead_tokens
                if cost < best[j]:
                    best[j], start[j] = cost, i
        batches, j = [], n
        while j > 0:
            batches.append([int(x) for x in order[start[j] : j]])
            j = start[j]
        return batches[::-1]

    def _forward(self, ids_batch: list[list[int]]):
        """Mean of the selected layers' outputs, [B, T, H] float32, plus the ids and mask."""
        import torch

        width = max(len(x) for x in ids_batch)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(ids_batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids_batch), width), dtype=torch.long)
        for row, seq in enumerate(ids_batch):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        self.real_tokens += int(mask.sum())
        self.padded_tokens += ids.numel()
        ids, mask = ids.to(self.device), mask.to(self.device)
        captured: dict[int, torch.Tensor] = {}
        deepest = max(self.block_ids)

        def hook(block_id):
            def fn(_module, _args, output):
                captured[block_id] = output[0] if isinstance(output, tuple) else output
                if block_id == deepest:
                    raise _Stop

            return fn

        handles = [self.blocks[b].register_forward_hook(hook(b)) for b in set(self.block_ids)]
        try:
            with torch.inference_mode():
                # No attention mask: right padding under causal attention (module docstring).
                self.backbone(input_ids=ids, use_cache=False)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        stacked = torch.stack([captured[b].float() for b in self.block_ids])
        return stacked.mean(dim=0), ids, mask

    def encode(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool = False,
        max_length: int = 1024,
        uniform_fallback: bool = False,
    ) -> np.ndarray:
        """Texts → float32 [n, H] unit vectors (zero rows where all weights are zero, unless
        `uniform_fallback`, which then averages all tokens with equal weight)."""
        import torch

        ids_all = self.tokenize(texts, add_special_tokens, max_length) if len(texts) else []
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        lengths = np.array([len(x) for x in ids_all], dtype=np.int64)
        for batch in self._batches(lengths):
            nonempty = [i for i in batch if lengths[i] > 0]
            if not nonempty:
                continue
            h, ids, mask = self._forward([ids_all[i] for i in nonempty])
            w = self.weights[ids] * mask
            if uniform_fallback:
                w = torch.where(w.sum(dim=1, keepdim=True) > 0, w, mask.float())
            total = w.sum(dim=1, keepdim=True)
            v = (w.unsqueeze(-1) * h).sum(dim=1) / total.clamp_min(1e-12)
            v = torch.where(total > 0, v, torch.zeros_like(v))
            norm = v.norm(dim=-1, keepdim=True)
            v = torch.where(norm > 0, v / norm.clamp_min(1e-12), v)
            out[nonempty] = v.cpu().numpy()
        return out

    def answer_vectors(self, instruction: str, answers: Sequence[str]) -> np.ndarray:
        """[K, H] vectors of `instruction + " " + answer`; an empty answer gives the zero vector."""
        return self.answers_batch([instruction], [answers])[0]

    def answers_batch(
        self, instructions: Sequence[str], answers: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """Vectors for many instructions' answers in one sorted, batched pass: one [K_i, H] each."""
        texts, slots = [], []
        for r, (inst, group) in enumerate(zip(instructions, answers, strict=True)):
            for k, a in enumerate(group):
                if a is not None and str(a).strip():
                    texts.append(f"{inst} {a}")
                    slots.append((r, k))
        vecs = self.encode(texts, add_special_tokens=False, max_length=1024)
        out = [np.zeros((len(g), self.hidden_size), dtype=np.float32) for g in answers]
        for (r, k), v in zip(slots, vecs, strict=True):
            out[r][k] = v
        return out

    def instruction_vectors(self, instructions: Sequence[str]) -> np.ndarray:
        """[n, H] instruction vectors for binning (special tokens, 512 tokens, uniform fallback)."""
        return self.encode(
            instructions, add_special_tokens=True, max_length=512, uniform_fallback=True
        )

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)
