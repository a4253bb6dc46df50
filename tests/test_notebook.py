"""notebooks/quickstart.ipynb runs top to bottom (tiny settings) in a fresh Jupyter kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def test_notebook_is_stored_clean_and_valid():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 6 and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert 'os.environ.get("NEUROVIT_NOTEBOOK_SIZE"' in code[0].source  # the budget switch is at the top


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NEUROVIT_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("NEUROVIT_NOTEBOOK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "size 'tiny'" in text and "validation Dice" in text and "node_f1" in text
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 3  # preview, side view, MIP/SWC overlay
    run = tmp_path / "work" / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file() and list((run / "test_predictions").glob("*.tif"))
    assert list((run / "evaluation" / "traced").glob("*.swc"))
    assert json.loads((run / "evaluation" / "metrics.json").read_text())["rows"]
