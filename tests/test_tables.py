"""Columnar pools (adg.io.tables): folders of Parquet shards, `datasets` folders (a Dataset, a
DatasetDict of one split or of several), a file that is not Parquet, a damaged row group and nulls
in a Parquet pool."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REAL, as_alpaca, as_messages, read_jsonl, request, sample_records, write_pool

from adg.cli import main
from adg.io import reading


def test_a_folder_of_parquet_shards(tmp_path, capsys):
    shards = tmp_path / "data"
    shards.mkdir()
    rows = [as_alpaca(r) for r in REAL]
    for i in range(2):
        part = pa.Table.from_pylist(rows[i * 6 : (i + 1) * 6])
        pq.write_table(part, shards / f"train-0000{i}-of-00002.parquet")
    out = tmp_path / "o.jsonl"
    assert main(["ingest", str(shards), "--output", str(out)]) == 0
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids[:2] == ["train-00000-of-00002.parquet#0", "train-00000-of-00002.parquet#1"]
    assert len(ids) == 12 and "train-00001-of-00002.parquet: alpaca shape, 6" in (
        capsys.readouterr().out
    )


def test_a_datasets_folder(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    rows = [{**as_messages(r, REAL[0]), "source": "alpaca-gpt4"} for r in REAL[1:]]
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder), num_shards=2)
    out, orig = tmp_path / "o.jsonl", tmp_path / "orig"
    assert main(["ingest", str(folder), "--output", str(out), "--originals", str(orig)]) == 0
    assert "messages shape, 11 accepted, 0 rejected" in capsys.readouterr().out
    assert [r["instruction"] for r in read_jsonl(out)] == [request(r) for r in REAL[1:]]
    assert pq.read_table(orig).to_pylist() == rows
    # A DatasetDict with one split is that split; with two, the user picks one.
    split = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    split.save_to_disk(str(tmp_path / "dd"))
    assert len(reading.read_pool(tmp_path / "dd").records) == 11
    datasets.DatasetDict({"train": split["train"], "test": split["train"]}).save_to_disk(
        str(tmp_path / "dd2")
    )
    assert main(["ingest", str(tmp_path / "dd2"), "--output", str(out)]) == 2
    assert "give one split's folder, e.g." in capsys.readouterr().err


def test_a_file_that_is_not_parquet_is_one_line(tmp_path, capsys):
    src = tmp_path / "pool.parquet"
    src.write_text('{"instruction": "x"}\n')
    assert main(["ingest", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{src}: not a readable parquet file" in err


def test_a_damaged_row_group_keeps_the_rows_before_it(tmp_path):
    rows = [as_alpaca(r) for r in sample_records(200)]
    src = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=50)
    page = pq.ParquetFile(src).metadata.row_group(3).column(2).data_page_offset
    data = bytearray(src.read_bytes())
    data[page : page + 16] = b"\xff" * 16  # the last row group's page header
    src.write_bytes(bytes(data))
    result = reading.read_pool(src)
    assert len(result.records) == 150 and result.read == 151
    (reject,) = result.rejects
    assert reject.line == 150 and reject.unit == "row"
    assert "damaged data after row 149" in reject.reason and "\n" not in reject.reason


def test_nulls_in_an_alpaca_parquet_are_missing_fields(tmp_path):
    rows = [as_alpaca(r) for r in REAL[:3]]
    rows[1]["input"] = None
    result = reading.read_pool(write_pool(tmp_path, "alpaca", "parquet", rows))
    assert not result.rejects and "input" not in result.records[1]
