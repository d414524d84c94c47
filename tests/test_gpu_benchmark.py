"""The GPU benchmark's results file, written without a GPU: its last step must not fail after
the device time is spent."""

from __future__ import annotations

import json

import benchmarks.gpu as gpu
from benchmarks.common import write_results


def test_the_gpu_results_render_their_table_from_the_json(tmp_path):
    payload = {
        "batch": 256,
        "size": 299,
        "device": "NVIDIA H100 80GB HBM3",
        "results": {
            "inception_v4_attention/paper/eager": {"images_per_s": 1200.0, "peak_gib": 30.5},
            "inception_v4/all/compile": {"images_per_s": 2400.0, "peak_gib": 41.0},
        },
    }
    write_results("gpu", payload, gpu.table, tmp_path)
    text = (tmp_path / "gpu.md").read_text()
    minutes = round(20 * gpu.PAPER_EPOCH_IMAGES / 1200.0 / 60)
    assert f"| inception_v4_attention | paper | off | 1,200 | 30.5 | {minutes} |" in text
    assert "| inception_v4 | all | on | 2,400 | 41.0 |" in text
    assert "NVIDIA H100 80GB HBM3" in text
    assert json.loads((tmp_path / "gpu.json").read_text())["results"] == payload["results"]
