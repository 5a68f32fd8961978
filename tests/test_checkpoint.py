"""A checkpoint is data, never code."""

import pytest
import torch

from harness.engine import checkpoint
from harness.errors import ConfigError


class RunsCode:
    """Unpickling this would create a file: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"version": checkpoint.CHECKPOINT_VERSION, "model": RunsCode(marker)}, path)
    with pytest.raises(ConfigError, match="was refused: it holds objects other than tensors"):
        checkpoint.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "unreadable"),
        (b"not a zip file at all", "unreadable"),
    ],
)
def test_truncated_or_foreign_files(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        checkpoint.load(path)


def test_wrong_version_and_missing_model(tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"version": 0, "model": {}}, old)
    with pytest.raises(ConfigError, match="has version 0; this harness reads version 1"):
        checkpoint.load(old)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(ConfigError, match="not a freezelab checkpoint"):
        checkpoint.load(other)


def test_round_trip_is_atomic_and_readable(tmp_path):
    path = tmp_path / "ok.pt"
    checkpoint.save(path, {"model": {"w": torch.arange(3.0)}})
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.arange(3.0))
    assert path.stat().st_mode & 0o044  # readable by others, like any written file
    assert not list(tmp_path.glob(".*.tmp"))
