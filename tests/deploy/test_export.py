"""`hpsearch export --quantize int8 --onnx`: every form written, measured and described in the card;
bad flags and tasks without these forms refused in one line, with nothing written."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_SPEC, run_hpsearch
from tests.views.conftest import make_synthetic_study


@pytest.mark.slow
def test_export_writes_each_form_measured_against_fp32(deployed):
    result, out, spec = deployed
    recorded = json.loads((out / "deployment.json").read_text())
    forms = {m["form"]: m for m in recorded["forms"]}
    # The fp32 baseline and both requested forms, each with its file where the card says it is.
    assert list(forms) == ["pytorch fp32", "int8", "onnx"]
    for m in forms.values():
        size = sum((out / p).stat().st_size for p in m["path"].split(", ")) / 1e6
        assert m["size_mb"] == pytest.approx(size) and m["latency_ms"] > 0
        assert m["metric"] == "accuracy" and m["value"] == m["metrics"]["accuracy"]
    # int8 weights take less room than fp32 ones (the fp32 embeddings keep it above a quarter).
    assert 0.25 < forms["int8"]["size_mb"] / forms["pytorch fp32"]["size_mb"] < 0.8
    assert recorded["eval_examples"] == spec.dataset.max_eval_samples
    # The card and the CLI show the same table; the card tells how to load each form.
    card = (out / "README.md").read_text()
    assert "## Deployment" in card and "### int8 (`int8/`)" in card and "### ONNX (`onnx/`)" in card
    assert f"| int8 | `int8/model_int8.pt` | {forms['int8']['size_mb']:.1f} |" in card
    assert (
        "deployable forms" in result.stdout
        and f"{forms['onnx']['latency_ms']:.2f}" in result.stdout
    )
    # Built beside OUT_DIR and moved there whole: no staging folder is left.
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_bad_flags_and_generating_tasks_are_refused_with_nothing_written(workdir):
    out = workdir / "exports" / "out"
    bad_choice = run_hpsearch("export", "--study", "x", "--quantize", "int4", str(out), cwd=workdir)
    # A quantization hpsearch does not make is a usage error naming the choices.
    assert (
        bad_choice.returncode == 2
        and "Invalid value for '--quantize': 'int4' is not 'int8'" in bad_choice.stderr
    )
    spec = json.loads(json.dumps(TINY_SPEC))
    spec.update(task="causal-lm", objective={"metric": "loss"})
    spec["dataset"] = {k: v for k, v in spec["dataset"].items() if k != "label"}
    make_synthetic_study(
        workdir / "lm.db", "lm", spec, metrics=({"eval_loss": 2.0}, {"eval_loss": 1.5})
    )
    refused = run_hpsearch(
        "export",
        "--study",
        "lm",
        "--storage",
        f"sqlite:///{workdir / 'lm.db'}",
        "--onnx",
        str(out),
        cwd=workdir,
    )
    # A causal LM has no int8/ONNX form here: one line naming the tasks that have them.
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        (
            "Error: --quantize and --onnx export text-classification and token-classification "
            "and question-answering models; study 'lm' is causal-lm: export it without them"
        )
    ]
    unknown = run_hpsearch(
        "export",
        "--study",
        "nope",
        "--storage",
        f"sqlite:///{workdir / 'lm.db'}",
        "--quantize",
        "int8",
        str(out),
        cwd=workdir,
    )
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert unknown.stderr.startswith("Error: ") and "Traceback" not in unknown.stderr
    # None of them created OUT_DIR, nor its parent.
    assert not out.parent.exists()


@pytest.mark.slow
def test_a_non_empty_out_dir_is_refused_and_left_as_it_was(classifier_study, cache_dir):
    out = classifier_study / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_hpsearch(
        "export",
        "--study",
        "tweets",
        "--onnx",
        str(out),
        cwd=classifier_study,
        env={"HPSEARCH_CACHE": str(cache_dir)},
    )
    assert result.returncode == 1 and "is not an empty directory; name a new one" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
