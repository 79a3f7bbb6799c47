"""The selection report, built from a real small run on the tiny model: sections, plots, escaping,
Markdown and metrics; `adg select` and `adg run` write it to the output folder."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import sample_records, selected_run, write_jsonl

from adg.cli import main
from adg.reporting import report as rp

SECTIONS = {"run", "plane", "histograms", "bins", "examples", "tasks"}
EVIL = "Explain this tag: <script>alert('x')</script> & why it matters"


class _Page(HTMLParser):
    """Collects tags, section ids, svg count, table rows (each a list of its cells' text) and all
    text of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.sections: list[str] = []
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self.circles = {"pool": 0, "top": 0}
        self._group = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "g" and a.get("class") in self.circles:
            self._group = a["class"]
        if tag == "circle" and self._group:
            self.circles[self._group] += 1

    def handle_endtag(self, tag):
        if tag == "g":
            self._group = None
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    return p


@pytest.fixture(scope="module")
def small_run(tiny_model_dir, tmp_path_factory):
    """ingest → generate → embed → cluster → score → select on the tiny model, 25 records."""
    from adg.stages.cluster import cluster_file
    from adg.stages.embed import embed_file
    from adg.stages.generate import SamplingConfig, generate_file
    from adg.stages.ingest import ingest
    from adg.stages.score import score_file
    from adg.stages.select import select_file

    work = tmp_path_factory.mktemp("report-run")
    records = [*sample_records(24), {"id": "evil", "instruction": EVIL}]
    raw = write_jsonl(work / "raw.jsonl", records)
    with open(raw, "a", encoding="utf-8") as fh:
        fh.write('{"id": 1, "instruction": "duplicate id"}\n{"instruction": ""}\n')
    ingest(raw, work / "pool.jsonl", work / "rejects.jsonl")
    model = str(tiny_model_dir)
    cfg = SamplingConfig(num_samples=3, max_new_tokens=12, batch_size=13, temperature=1.0)
    generate_file(work / "pool.jsonl", work / "generated.jsonl", model=model, cfg=cfg, backend="hf")
    embed_file(work / "pool.jsonl", work / "emb.npy", model=model)
    cluster_file(str(work / "emb.npy"), str(work / "clusters.npy"), count=4)
    score_file(work / "generated.jsonl", work / "scored.jsonl", model=model)
    params = {"model": "tiny", "num_samples": 3, "temperature": 1.0, "dispersion_weight": 0.6}
    numbers = select_file(
        work / "scored.jsonl",
        work / "clusters.npy",
        budget=6,
        output_dir=work / "out",
        run_parameters=params,
        rejects_path=work / "rejects.jsonl",
    )
    return work, numbers


def test_report_sections_plots_and_escaping(small_run):
    work, numbers = small_run
    page = (work / "out" / "report.html").read_text(encoding="utf-8")
    parsed = parse(page)
    assert set(parsed.sections) == SECTIONS
    # the D-I plane plus three histograms, all inline SVG; no script, no external resource
    assert parsed.tags.count("svg") >= 4
    assert parsed.circles["top"] == 6 and parsed.circles["pool"] == 25 - 6
    assert "script" not in parsed.tags
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    text = "".join(parsed.text)
    # the record with markup is shown as text (escaped), never as a tag
    assert "<script>alert('x')</script>" in text
    assert "<script>" not in page
    for word in ("tiny", "temperature", "dispersion_weight", "strategy", "budget"):
        assert word in text
    # two lines of raw.jsonl were rejected at ingest (a duplicate id, an empty instruction)
    assert len((work / "rejects.jsonl").read_text().splitlines()) == 2
    assert ["rejected at ingest", "2"] in parsed.rows
    assert "The task-type analysis did not run" in text
    # bins table: as many rows as the largest bins recorded in the report
    assert numbers["bins_table"] and sum(b["top"] for b in numbers["bins_table"]) == 6
    assert sum(b["size"] for b in numbers["bins_table"]) == 25


def test_report_markdown_and_metrics(small_run):
    work, numbers = small_run
    md = (work / "out" / "report.md").read_text(encoding="utf-8")
    assert "# ADG selection report" in md and "| top | 6 |" in md
    groups = {g: json.loads((work / "out" / f"{g}.json").read_text()) for g in rp.GROUPS}
    from adg.io.reading import read_records

    rendered = rp.build_report(
        read_records(work / "scored.jsonl"), groups, numbers, {"model": "tiny"}, rejected=2
    )
    m = rendered.metrics
    assert m["records_in"] == 25 and m["rejected"] == 2 and m["selected"] == 6
    assert m["budget_fill"] == 1.0 and 0 < m["bins_in_top_share"] <= 1
    for group in ("pool", "top", "middle", "bottom"):
        assert m[f"mean_D_{group}"] >= 0 and 0 <= m[f"mean_I_{group}"] <= 1
    assert m["mean_D_top"] * 0.6 + m["mean_I_top"] * 0.4 >= (
        m["mean_D_bottom"] * 0.6 + m["mean_I_bottom"] * 0.4
    )


def test_add_analysis_replaces_the_tasks_section(small_run):
    from adg.stages.analyse import composition

    work, _ = small_run
    page = (work / "out" / "report.html").read_text(encoding="utf-8")
    comp = composition(["Math", "Coding", "Math", "Others"], ["Math"], "test <classifier>")
    updated = rp.add_analysis(page, comp)
    parsed = parse(updated)
    assert set(parsed.sections) == SECTIONS
    text = "".join(parsed.text)
    assert "test <classifier>" in text and "+50.0%" in text
    assert "did not run" not in text
    assert parsed.tags.count("svg") == parse(page).tags.count("svg") + 1


def test_cli_select_writes_report(small_run, tmp_path, capsys):
    work, _ = small_run
    code = main(
        [
            "select",
            "--input",
            str(work / "scored.jsonl"),
            "--clusters",
            str(work / "clusters.npy"),
            "--budget",
            "5",
            "--output-dir",
            str(tmp_path),
            "--run-parameters",
            '{"model": "cli-model"}',
        ]
    )
    assert code == 0
    assert "report:" in capsys.readouterr().out
    page = parse((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert set(page.sections) == SECTIONS and "cli-model" in "".join(page.text)
    assert "not known" in "".join(page.text)  # no --rejects given
    assert (tmp_path / "report.md").is_file()
    bad = ["select", "--input", str(work / "scored.jsonl"), "--clusters"]
    bad += [str(work / "clusters.npy"), "--budget", "5", "--output-dir", str(tmp_path)]
    assert main([*bad, "--run-parameters", "{nope"]) == 2
    assert "--run-parameters: not JSON" in capsys.readouterr().err


@pytest.mark.kfp_local
def test_adg_run_copies_report_and_runs_analysis(tiny_model_dir, tmp_path):
    """The KFP pipeline under kfp.local: select writes the HTML artifact, analyse runs behind
    analyse_enabled, and `run_local` puts both into the output folder."""
    from adg.stages.generate import SamplingConfig
    from adg_kfp.pipelines.local import LocalRunOptions, run_local

    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(10))
    out = tmp_path / "out"
    opts = LocalRunOptions(
        input=str(pool),
        model=str(tiny_model_dir),
        budget=3,
        output_dir=str(out),
        cluster_count=2,
        sampling=SamplingConfig(num_samples=2, max_new_tokens=6, batch_size=10),
        backend="hf",
        analyse=True,
    )
    run_local(opts)
    page = parse((out / "report.html").read_text(encoding="utf-8"))
    assert set(page.sections) == SECTIONS
    text = "".join(page.text)
    assert "did not run" not in text and "Classifier" in text
    labels = [json.loads(x) for x in (out / "task_labels.jsonl").read_text().splitlines()]
    assert len(labels) == 10 and {"id", "category"} <= set(labels[0])
    comp = json.loads((out / "task_composition.json").read_text())
    assert comp["selected"]["count"] == 3
    assert "## Task types" in (out / "report.md").read_text()
    assert Path(out / "top.json").is_file()


def test_report_md_escapes_run_parameters_and_prints_them_as_given(small_run, tmp_path):
    """--run-parameters reach report.md literally: `<script>` stays text in any Markdown renderer
    (the KFP UI renders the Markdown artifact), numbers as their JSON type wrote them, parameters
    of no stage last in a stable order."""
    work, _ = small_run
    params = {"zeta": 5, "note": "<script>alert(1)</script> | *x*", "alpha": 1.4, "lr": 1e-05}
    args = ["select", "--input", str(work / "scored.jsonl"), "--clusters"]
    args += [str(work / "clusters.npy"), "--budget", "5", "--output-dir", str(tmp_path)]
    assert main([*args, "--run-parameters", json.dumps(params)]) == 0
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in md
    assert "|  | note | &lt;script&gt;alert(1)&lt;/script&gt; \\| \\*x\\* |" in md
    assert "| other | alpha | 1.4 |" in md and "|  | zeta | 5 |" in md and "|  | lr | 1e-05 |" in md
    rows = [line.split(" | ")[1] for line in md.splitlines() if line.startswith("| ")]
    assert rows.index("alpha") < rows.index("lr") < rows.index("note") < rows.index("zeta")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "adg run --analyse" in page


def test_run_parameters_keep_their_types_and_group_by_stage(tmp_path):
    """The pipeline's run parameters arrive at the select task as text substituted into the
    compiled dict's placeholder strings (kfp.local writes "2.0" for cluster_count 2, as its
    executor input in a run's log shows) or as Struct doubles: integer settings are ints again,
    floats floats, flags bools, text stays text; the report groups them by stage in pipeline
    order, the model shown once by name."""
    from adg.config import typed_parameters

    struct = {
        "select_strategy": "exact",
        "cluster_count": "4.0",
        "score_anisotropy_weight": "0.4",
        "generate_temperature": 1.0,
        "model": "/home/u/.cache/adg/models/SmolLM2-135M-Instruct",
        "score_dispersion_weight": 0.6,
        "generate_num_samples": 5.0,
        "generate_tensor_parallel_size": "1",
        "select_budget": 4,
    }
    typed = typed_parameters(struct)
    assert typed["cluster_count"] == 4 and type(typed["cluster_count"]) is int
    assert (
        type(typed["generate_num_samples"]) is int and type(typed["generate_temperature"]) is float
    )
    assert typed["generate_tensor_parallel_size"] == 1 and typed["score_anisotropy_weight"] == 0.4
    flags = typed_parameters({"score_all_metrics": "false", "cluster_seed": "x", "model": "7"})
    assert flags == {"score_all_metrics": False, "cluster_seed": "x", "model": "7"}
    selected_run(tmp_path, sample_records(12), budget=4, run_parameters=typed)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    table = md.split("## Parameters")[1].split("## Counts")[0].strip().splitlines()
    assert table[2:] == [
        "|  | model | SmolLM2-135M-Instruct |",
        "| generate | num\\_samples | 5 |",
        "|  | temperature | 1.0 |",
        "|  | tensor\\_parallel\\_size | 1 |",
        "| score | dispersion\\_weight | 0.6 |",
        "|  | anisotropy\\_weight | 0.4 |",
        "| cluster | count | 4 |",
        "| select | strategy | exact |",
        "|  | budget | 4 |",
    ]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert (
        '<td class="l" title="/home/u/.cache/adg/models/SmolLM2-135M-Instruct">'
        "SmolLM2-135M-Instruct</td>"
    ) in page
    assert "4.0" not in "".join(parse(page).text).split("Counts")[0]


def test_templates_escape_values_in_html_and_markdown(tmp_path):
    """Parameter values, record text and the classifier's name are data: `<script>` is text in
    the page (autoescape) and in the Markdown (the `md` filter), before and after the analysis."""
    from adg.stages.analyse import composition

    evil = "<script>alert(1)</script>"
    records = [*sample_records(11), {"id": "evil", "instruction": EVIL, "input": evil}]
    params = {"note": evil, "model": "m_1"}
    selected_run(tmp_path, records, budget=4, run_parameters=params)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    comp = composition(["Math", "Coding", "Math", "Others"], ["Math"], f"clf {evil}")
    page2, md2 = rp.reports_with_analysis(page, md, comp)
    for html in (page, page2):
        assert "<script>" not in html and "script" not in parse(html).tags
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert evil in "".join(parse(html).text)
    assert f"clf {evil}" in "".join(parse(page2).text)
    for text in (md, md2):
        assert "<script>" not in text
        assert "| other | note | &lt;script&gt;alert(1)&lt;/script&gt; |" in text
        assert "|  | model | m\\_1 |" in text
    assert "Classifier: clf &lt;script&gt;alert(1)&lt;/script&gt;" in md2


def test_add_analysis_renders_the_page_again_from_its_data(tmp_path):
    """The page carries its data: adding an analysis twice leaves one tasks section (the latest),
    and the rest of the page is unchanged; a page without that data is a clear error."""
    from adg.errors import InputError
    from adg.stages.analyse import composition

    selected_run(tmp_path, sample_records(12), budget=4, run_parameters={"model": "tiny"})
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    first = rp.add_analysis(page, composition(["Math", "Coding"], ["Math"], "first"))
    second = rp.add_analysis(first, composition(["Math", "Writing"], None, "second"))
    parsed = parse(second)
    assert parsed.sections.count("tasks") == 1 and set(parsed.sections) == SECTIONS
    text = "".join(parsed.text)
    assert "second" in text and "Classifier: first" not in text and "Writing" in text
    before, after = page.split('<section id="tasks">')[0], second.split('<section id="tasks">')[0]
    assert before == after
    assert rp.page_context(second) == rp.page_context(page)
    with pytest.raises(InputError, match="not an adg report page"):
        rp.add_analysis("<html><body><section id='tasks'></section></body></html>", {})
    damaged = page.replace('content="', 'content="!', 1)
    with pytest.raises(InputError, match="damaged"):
        rp.add_analysis(damaged, {})
