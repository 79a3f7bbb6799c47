"""Stage → container image, read once from `images/images.env` (overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

IMAGES_ENV = Path(__file__).resolve().parent.parent / "images" / "images.env"

# Which image family serves each stage; the Dockerfiles in images/ install the extras each needs.
STAGE_FAMILY = {
    "preflight": "cpu",
    "ingest": "cpu",
    "shard": "cpu",
    "merge": "cpu",
    "cluster": "cpu",
    "select": "cpu",
    "export": "cpu",
    "ledger": "cpu",
    "curation": "cpu",
    "compare": "cpu",
    "analyse": "generate",
    "generate": "generate",
    "embed": "generate",
    "score": "generate",
    "train": "train",
    "evaluate": "eval",
}


def read_images_env(path: Path = IMAGES_ENV) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def family_image(family: str) -> str:
    """The image reference of a family: env var ADG_IMAGE_<FAMILY> wins over images.env."""
    key = f"ADG_IMAGE_{family.upper()}"
    return os.environ.get(key) or read_images_env()[key]


def image_for(stage: str) -> str:
    """The image reference for a stage: its family's (`family_image`)."""
    return family_image(STAGE_FAMILY[stage])
