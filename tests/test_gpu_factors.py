"""The measured GPU factors of `adg plan` (adg.planning.gpu_factors): the shipped file reads, a bad
file is one line naming file and field, and a card without an entry keeps the assumed factors."""

import json
from pathlib import Path

import pytest

from adg.errors import InputError
from adg.planning import gpu_factors

ENTRY = {
    "forward": 0.4,
    "decode": 0.06,
    "device": "NVIDIA H100 80GB HBM3",
    "date": "2000-01-01",
    "shape": "llama3-8b",
    "command": "python -m bench.gpu",
}


def check_measured(devices: dict) -> None:
    """Every entry names its measurement (all FIELDS filled) and its factors are in (0, 1]."""
    for gpu, entry in devices.items():
        assert set(gpu_factors.FIELDS) <= set(entry), gpu
        assert all(entry[f] not in (None, "") for f in gpu_factors.FIELDS), gpu
        assert 0 < entry["forward"] <= 1 and 0 < entry["decode"] <= 1, gpu


def test_the_shipped_file_reads_and_holds_only_measured_entries():
    devices = gpu_factors.load()
    check_measured(devices)
    assert gpu_factors.lookup("no-such-card") is None


def filled(tmp_path, entries: dict) -> Path:
    """The shipped file with `entries` added, as `python -m bench.gpu --write-factors` adds them."""
    data = json.loads(gpu_factors.factors_path().read_text(encoding="utf-8"))
    data["devices"].update(entries)
    path = tmp_path / "gpu_factors.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


H200 = {**ENTRY, "forward": 1, "decode": 0.0412, "device": "NVIDIA H200", "shape": "llama3-8b"}


def test_a_filled_file_reads_whole_and_every_entry_is_checked(tmp_path):
    # The shipped file holds no entry yet; the same file with two measured cards reads back
    # whole, and a bad field in either entry (the second too) is refused, naming it.
    path = filled(tmp_path, {"h100": ENTRY, "h200": H200})
    devices = gpu_factors.load(path)
    assert devices == {"h100": ENTRY, "h200": H200}
    check_measured(devices)
    assert gpu_factors.lookup("h200", path)["forward"] == 1.0  # 1 is in (0, 1]
    for gpu in ("h100", "h200"):
        good = {"h100": ENTRY, "h200": H200}[gpu]
        for field in gpu_factors.FIELDS:
            for bad in (None, ""):
                entry = {k: v for k, v in good.items() if k != field or bad is not None}
                if bad is not None:
                    entry[field] = bad
                bad_path = filled(tmp_path, {"h100": ENTRY, "h200": H200, gpu: entry})
                with pytest.raises(InputError, match=rf"devices\.{gpu}: field '{field}' missing"):
                    gpu_factors.load(bad_path)
        for field in ("forward", "decode"):
            for value in (0, -0.1, 1.01, "0.4", True):
                bad_path = filled(
                    tmp_path, {"h100": ENTRY, "h200": H200, gpu: {**good, field: value}}
                )
                with pytest.raises(InputError, match=rf"devices\.{gpu}\.{field}: .* is not in"):
                    gpu_factors.load(bad_path)


def test_lookup_names_the_run(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"devices": {"h100": ENTRY}}))
    monkeypatch.setenv(gpu_factors.ENV, str(path))
    found = gpu_factors.lookup("h100")
    assert (found["forward"], found["decode"]) == (0.4, 0.06)
    assert found["source"] == (
        "measured by `python -m bench.gpu` on NVIDIA H100 80GB HBM3, 2000-01-01, llama3-8b shape: "
        "python -m bench.gpu"
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
