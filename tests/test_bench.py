"""The bench's pairing of measurements (the measurements themselves are not tests: no timing here)."""

from benchmarks.bench import alternating


def test_rounds_alternate_which_side_goes_first_and_the_warm_up_is_not_kept():
    calls = []

    def side(name):
        return lambda r: calls.append((r, name)) or (name, r)

    kept = alternating(3, {"a": side("a"), "b": side("b")}, setup=lambda r: r)
    assert calls == [(0, "b"), (0, "a"), (1, "a"), (1, "b"), (2, "b"), (2, "a"), (3, "a"), (3, "b")]
    assert kept == {"a": [("a", 1), ("a", 2), ("a", 3)], "b": [("b", 1), ("b", 2), ("b", 3)]}
