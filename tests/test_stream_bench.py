"""benchmarks/stream.py at a tiny size: the script runs and reports its ratios (no timing is asserted)."""

import json

from benchmarks import stream


def test_stream_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "stream.json"
    result = stream.main(
        ["--images", "30", "--repeats", "1", "--workers", "0", "--image-size", "16", "--batch", "8"]
        + ["--source-size", "48x32", "--out", str(out), "--device", "cpu"]
    )
    assert result["images"] == 30 and result["streamed_vs_plain"] > 0 and result["cached_vs_streamed"] > 0
    assert set(result["images_per_s"]) == {"plain", "streamed", "cached"}
    assert json.loads(out.read_text())["target"] == 0.95
