"""The bench's pairing of measurements (the measurements themselves are not tests: no timing here)."""

from benchmarks.bench import alternating


def test_rounds_alternate_which_side_goes_first_and_the_warm_up_is_not_kept():
    calls = []

    def side(name):
        return lambda r: calls.append((r, name)) or (name, r)

    kept = alternating(3, {"a": side("a"), "b": side("b")}, setup=lambda r: r)
    assert calls == [(0, "b"), (0, "a"), (1, "a"), (1, "b"), (2, "b"), (2, "a"), (3, "a"), (3, "b")]
    assert kept == {"a": [("a", 1), ("a", 2), ("a", 3)], "b": [("b", 1), ("b", 2), ("b", 3)]}


def test_stream_benchmark_runs_tiny(tmp_path):
    from benchmarks import stream

    out = tmp_path / "stream.json"
    result = stream.main(
        ["--images", "30", "--repeats", "1", "--workers", "0", "--image-size", "16", "--batch", "8"]
        + ["--source-size", "48x32", "--out", str(out), "--device", "cpu"]
    )
    assert result["images"] == 30 and result["streamed_vs_plain"] > 0 and result["cached_vs_streamed"] > 0
    assert set(result["images_per_s"]) == {"plain", "streamed", "cached"}
    assert json.loads(out.read_text())["target"] == 0.95
