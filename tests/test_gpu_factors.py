"""The measured GPU factors of `adg plan` (adg.gpu_factors): the shipped file reads, a bad file is
one line naming file and field, and a card without an entry keeps the assumed factors."""

import json

import pytest

from adg import gpu_factors
from adg.errors import InputError

ENTRY = {
    "forward": 0.4,
    "decode": 0.06,
    "device": "NVIDIA H100 80GB HBM3",
    "date": "2000-01-01",
    "shape": "llama3-8b",
    "command": "python bench/gpu.py",
}


def test_the_shipped_file_reads_and_holds_only_measured_entries():
    devices = gpu_factors.load()
    for gpu, entry in devices.items():
        assert set(gpu_factors.FIELDS) <= set(entry), gpu
    assert gpu_factors.lookup("no-such-card") is None


def test_lookup_names_the_run(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"devices": {"h100": ENTRY}}))
    monkeypatch.setenv(gpu_factors.ENV, str(path))
    found = gpu_factors.lookup("h100")
    assert (found["forward"], found["decode"]) == (0.4, 0.06)
    assert found["source"] == (
        "measured by bench/gpu.py on NVIDIA H100 80GB HBM3, 2000-01-01, llama3-8b shape: "
        "python bench/gpu.py"
    )
    assert gpu_factors.lookup("a100") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"devices": [1', r"f.json:1: malformed JSON"),
        ('{"cards": {}}', r"f.json: field 'devices'"),
        (
            json.dumps({"devices": {"h100": {**ENTRY, "command": ""}}}),
            r"devices.h100: field 'command'",
        ),
        (json.dumps({"devices": {"h100": {**ENTRY, "decode": 1.5}}}), r"devices.h100.decode: 1.5"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        gpu_factors.load(path)
