"""``python -m benchmarks.gpu`` on CPU at tiny sizes: every measurement is in its JSON, every ratio finite,
the peak it used stated; and the pieces it rests on (the peak table, the H P | P H interleaving).
The machines here have no GPU: the test checks the script, never the speed."""

import json
import math

import pytest

from benchmarks import gpu


def finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow  # a few dozen tiny trainings, fastai's included
def test_the_tiny_run_writes_every_measurement(tmp_path):
    out = tmp_path / "gpu.json"
    returned = gpu.main(["--tiny", "--threads", "1", "--peak-tflops", "2.5", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    assert result["meta"]["tiny"] is True and result["meta"]["repeats"] == 1
    assert result["peak"] == {
        "bf16_tflops": 2.5,
        "source": "--peak-tflops",
        "device": result["meta"]["device"],
    }

    assert set(result["workloads"]) == set(gpu.WORKLOADS)
    for w in result["workloads"].values():
        assert finite(w["flops_per_image"]) and w["flops_per_image"] > 0 and w["train_images"] > 0

    loops = {(e["workload"], e["variant"]): e for e in result["loop"]}
    assert set(loops) == {(w, v) for w in gpu.WORKLOADS for v in gpu.VARIANTS}
    for (workload, _), e in loops.items():
        assert "skipped" not in e
        assert finite(e["ratio"]) and e["ratio"] > 0 and len(e["ratios"]) == 1
        flops = result["workloads"][workload]["flops_per_image"]
        for side in ("harness", "plain"):
            ips = e["images_per_s"][side]
            assert finite(ips) and ips > 0
            assert e["mfu"][side] == pytest.approx(flops * ips / 2.5e12)

    frozen = {e["workload"]: e for e in result["frozen"]}
    assert set(frozen) == set(gpu.WORKLOADS)
    for e in frozen.values():
        assert finite(e["speedup"]) and e["speedup"] > 0
        assert e["cached_groups"] > 0  # the head_only side really ran on the cached prefix

    fastai = result["fastai"]
    assert "skipped" not in fastai and finite(fastai["ratio"]) and fastai["ratio"] > 0
    assert all(finite(v) for v in fastai["seconds"].values())

    syncs = result["syncs"]  # counted only where CUDA's sync debug mode exists; here it says so
    assert syncs["skipped"] == "needs CUDA (torch.cuda.set_sync_debug_mode)"
    entries = [*result["loop"], *result["frozen"], fastai, syncs]
    assert not [e for e in entries if "error" in e]


def test_the_peak_comes_from_the_device_name_and_unknown_devices_say_so():
    assert gpu.peak_bf16_tflops("NVIDIA H200")[0] == 989.0
    assert gpu.peak_bf16_tflops("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert gpu.peak_bf16_tflops("NVIDIA H100 PCIe")[0] == 756.0  # before the SXM entry
    assert gpu.peak_bf16_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0
    for name in ("NVIDIA H200 NVL", "cpu", "NVIDIA GeForce RTX 4090"):
        peak, source = gpu.peak_bf16_tflops(name)
        assert peak is None and "--peak-tflops" in source and name in source


def test_the_plain_loop_runs_alongside_so_that_rounds_alternate_which_side_goes_first():
    order = []

    class Plain:
        def epoch(self, seed):
            order.append(f"P{seed}")
            return 1.0

    hook = gpu.Alongside(Plain(), rounds=4)
    for epoch in range(4):
        order.append(f"H{epoch}")
        hook.on_epoch_end(None, {"epoch": epoch + 1})
    assert order == ["H0", "P0", "P1", "H1", "H2", "P2", "P3", "H3"]
    assert hook.seconds == [1.0] * 4
