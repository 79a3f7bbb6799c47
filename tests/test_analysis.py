"""Task-type analysis: the backbone classifier (tiny model for the mechanics, the embedded model
for real labels), the OpenAI-compatible endpoint path against a local HTTP server, and the
composition of pool versus selected subset."""

from __future__ import annotations

import json
import socket
import threading
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import numpy as np
import pytest
from helpers import embedded_model_or_skip, sample_records, selected_run, write_jsonl

from adg import analysis
from adg.cli import main

OBVIOUS = [
    ("Translate 'good morning' into French.", "Translation"),
    ("What is 17 * 23?", "Math"),
    ("Write a Python function that reverses a string.", "Coding"),
    ("Summarize the following paragraph in one sentence.", "Summarization"),
    ("Write a short poem about the sea.", "Writing"),
    ("Who wrote the novel Pride and Prejudice?", "Knowledge"),
]


def test_parse_category():
    assert analysis.parse_category("Math") == "Math"
    assert analysis.parse_category("Category: discrete decision.") == "Discrete_Decision"
    assert analysis.parse_category("instruction-following, or maybe Writing") == (
        "Instruction_Following"
    )
    assert analysis.parse_category("no idea") is None


def test_composition_shares_and_shift():
    comp = analysis.composition(["Math", "Math", "Writing", "Others"], ["Math", "Math"], "x")
    assert comp["pool"]["counts"]["Math"] == 2 and comp["pool"]["shares"]["Writing"] == 0.25
    assert comp["selected"]["shares"]["Math"] == 1.0
    assert comp["shift"]["Math"] == pytest.approx(0.5)
    assert sum(comp["pool"]["shares"].values()) == pytest.approx(1.0)
    assert analysis.composition(["Coding"], None)["shift"] is None


def test_model_classifier_batches_equal_single_passes(tiny):
    """Left padding and position ids make a batched pass score like one prompt at a time."""
    tokenizer, model = tiny
    clf = analysis.ModelClassifier(tokenizer=tokenizer, lm=model, batch_size=4)
    prompts = [analysis.classifier_prompt(r["instruction"]) for r in sample_records(5)]
    batched = clf._scores(prompts)
    single = np.concatenate([clf._scores([p]) for p in prompts])
    assert batched.shape == (5, len(analysis.CATEGORIES))
    np.testing.assert_allclose(batched, single, atol=1e-4)
    labels = clf.classify(sample_records(5))
    assert labels == clf.classify(sample_records(5))  # deterministic
    assert set(labels) <= set(analysis.CATEGORIES)


@pytest.mark.integration
def test_embedded_model_labels_obvious_instructions(capsys):
    path = embedded_model_or_skip()
    clf = analysis.ModelClassifier(str(path), batch_size=8)
    records = [{"id": n, "instruction": text} for n, (text, _) in enumerate(OBVIOUS)]
    labels = clf.classify(records)
    with capsys.disabled():
        for (text, want), got in zip(OBVIOUS, labels, strict=True):
            print(f"\nanalyse: {text!r}: expected {want}, got {got}", end="")
        print()
    right = [want for (_, want), got in zip(OBVIOUS, labels, strict=True) if want == got]
    # The 135M backbone is weak; these two it gets right (8 of 16 on the docs' probe set).
    assert labels[0] == "Translation" and labels[1] == "Math"
    assert len(right) >= 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_refusing_connections_fails_clearly(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    clf = analysis.EndpointClassifier(url, "m", timeout=5)
    with pytest.raises(analysis.AnalysisError, match="cannot connect"):
        clf.classify([{"id": 1, "instruction": "What is 2 + 2?"}])
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(2))
    args = ["analyse", "--input", str(pool), "--output", str(tmp_path / "l.jsonl")]
    code = main([*args, "--endpoint", url])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adg analyse: error: endpoint http://127.0.0.1:")
    assert "/v1/chat/completions: cannot connect" in err and "Traceback" not in err
    with pytest.raises(analysis.AnalysisError, match="http:// or https://"):
        analysis.EndpointClassifier("127.0.0.1:8000")


class _ChatHandler(BaseHTTPRequestHandler):
    """Answers like an OpenAI-compatible chat-completions endpoint, by keywords."""

    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if body.get("model") == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "model crashed"}')
            return
        text = body["messages"][-1]["content"].lower()
        if "translate" in text:
            answer = "Translation"
        elif any(ch.isdigit() for ch in text):
            answer = "Category: math"
        elif "poem" in text or "story" in text:
            answer = "Writing."
        else:
            answer = "I cannot tell."
        payload = {
            "id": "cmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    _ChatHandler.seen = []
    server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_endpoint_path_with_local_server(chat_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(analysis.API_KEY_ENV, "secret-key")
    records = [
        {"id": "a", "instruction": "Translate 'cat' into German."},
        {"id": "b", "instruction": "What is 12 + 30?"},
        {"id": "c", "instruction": "Write a poem about rain."},
        {"id": "d", "instruction": "Describe your favourite colour."},
    ]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    (tmp_path / "top.json").write_text(json.dumps(records[1:3]))
    selected_run(tmp_path / "select", records, budget=2)
    page = tmp_path / "select" / "report.html"
    svgs = page.read_text().count("<svg")
    out = tmp_path / "labels.jsonl"
    args = ["analyse", "--input", str(pool), "--selected", str(tmp_path / "top.json")]
    args += ["--output", str(out), "--endpoint", chat_server, "--endpoint-model", "served"]
    assert main([*args, "--report", str(page)]) == 0
    labels = [json.loads(line) for line in out.read_text().splitlines()]
    assert labels == [
        {"id": "a", "category": "Translation"},
        {"id": "b", "category": "Math"},
        {"id": "c", "category": "Writing"},
        {"id": "d", "category": "Others"},
    ]
    comp = json.loads(analysis.composition_path(out).read_text())
    assert comp["selected"]["counts"]["Math"] == 1 and comp["selected"]["count"] == 2
    assert comp["shift"]["Writing"] == pytest.approx(0.25)
    assert "/v1/chat/completions" in comp["classifier"]
    seen = _ChatHandler.seen
    assert len(seen) == 4  # selected records are in the pool: not asked twice
    assert {s["path"] for s in seen} == {"/v1/chat/completions"}
    assert {s["auth"] for s in seen} == {"Bearer secret-key"}
    assert all(s["model"] == "served" and s["temperature"] == 0 for s in seen)
    assert "Translation" in capsys.readouterr().out

    class Sections(HTMLParser):
        ids: ClassVar[list[str]] = []

        def handle_starttag(self, tag, attrs):
            if tag == "section":
                self.ids.append(dict(attrs)["id"])

    html = page.read_text()
    Sections().feed(html)
    assert Sections.ids == ["run", "plane", "histograms", "bins", "examples", "tasks"]
    assert "did not run" not in html and html.count("<svg") == svgs + 1


def test_endpoint_http_error_is_clear(chat_server):
    clf = analysis.EndpointClassifier(chat_server, "broken", timeout=5)
    with pytest.raises(analysis.AnalysisError, match=r"HTTP 500 .*model crashed"):
        clf.classify([{"id": 1, "instruction": "x"}])
