"""`isl-rt bench`: a sweep gives one complete result per configuration; bad options are refused
with one sentence; the measuring helpers it shares with benchmarks/ count and reset correctly."""

import importlib.util
import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt import bench
from isl_rt.cli import app

pytest.importorskip("torch")  # the small bundle is trained and exported here

#: every field a configuration's JSON object carries, and those that may not be None here
FIELDS = ("backend", "requested_backend", "precision", "batch_size", "stride", "threads", "dedn_passes_per_slice", "backend_description",
          "series", "slices", "seconds", "slices_per_s", "series_per_s", "latency_per_slice_ms", "latency_per_series_ms",
          "stage_seconds", "stage_share", "peak_rss_mib", "series_rss_growth_mib", "relative_to_first", "relative_to_first_range",
          "dedn_gflop_per_image", "dedn_flops_method", "dedn_gflops", "matmul_gflops", "matmul_measured",
          "dedn_share_of_matmul", "bundle", "input", "rounds", "warmup_series", "machine")
MACHINE = ("cpu", "cpu_flags", "cpus", "loadavg_1min", "gpu", "gpu_compute_capability", "gpu_driver", "platform",
           "python", "isl_rt", "versions", "native")
OPENVINO = importlib.util.find_spec("openvino") is not None


def _invoke(args):
    return CliRunner().invoke(app, ["bench", *args])


def test_a_sweep_gives_one_complete_result_per_configuration(small_bundle, phantom_cohort):
    backends = "onnxruntime,openvino" if OPENVINO else "onnxruntime"
    result = _invoke([str(phantom_cohort / "series_0001"), "--bundle", str(small_bundle.root), "--backend", backends,
                      "--batch-size", "4,8", "--stride", "2", "--threads", "1", "--slices", "1", "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    wanted = set(itertools.product(backends.split(","), (4, 8), (2,)))
    assert {(r["backend"], r["batch_size"], r["stride"]) for r in records} == wanted and len(records) == len(wanted)
    for r in records:
        assert set(FIELDS) <= set(r), set(FIELDS) - set(r)
        assert set(MACHINE) <= set(r["machine"])
        assert all(r[f] is not None for f in FIELDS if f not in ("dedn_share_of_matmul",)), r
        assert r["series"] == 1 and r["slices"] >= 1 and r["slices_per_s"] > 0 and r["series_per_s"] > 0
        assert r["dedn_passes_per_slice"] == small_bundle.partition().groups  # K=2: 2×2 cells; stride 2: 4 groups too
        assert set(r["stage_share"]) == {"decode", "kernels", "dedn", "drn", "outputs"}
        assert abs(sum(r["stage_share"].values()) - 1) < 0.01 and r["stage_share"]["dedn"] > 0
        assert sum(r["stage_seconds"].values()) == pytest.approx(r["seconds"], rel=0.01)  # every second in one stage
        lat = r["latency_per_series_ms"]
        assert 0 < lat["median"] <= lat["p90"] <= lat["p99"]
        assert lat["median"] == pytest.approx(1000 * r["seconds"], rel=1e-3)
        assert r["latency_per_slice_ms"]["median"] == pytest.approx(lat["median"] / r["slices"], rel=1e-2)
        assert r["peak_rss_mib"] > 50 and 0 <= r["series_rss_growth_mib"] < r["peak_rss_mib"] and r["dedn_gflops"] > 0 and r["matmul_gflops"] > 0
        assert r["dedn_gflop_per_image"] == pytest.approx(small_bundle_flops(small_bundle) / 1e9, rel=1e-3)
    assert records[0]["relative_to_first"] == 1.0
    assert "PASSED" in result.output


def test_without_a_folder_it_scans_the_phantom_and_prints_the_table(small_bundle):
    result = _invoke(["--bundle", str(small_bundle.root), "--backend", "onnxruntime", "--threads", "1", "--slices", "1",
                      "--warmup", "0"])
    assert result.exit_code == 0, result.output
    assert "built-in phantom" in result.stdout and "slices/s" in result.stdout and "machine:" in result.stdout
    assert "ONNX Runtime" in result.stdout and "PASSED" in result.output


def test_duration_runs_whole_rounds_until_the_time_is_up(small_bundle, phantom_cohort):
    result = _invoke([str(phantom_cohort / "series_0002"), "--bundle", str(small_bundle.root), "--backend", "onnxruntime",
                      "--threads", "1", "--duration", "0.001", "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert record["rounds"] == 1 and record["series"] == 1 and record["warmup_series"] == 0


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "0"], "--batch-size takes whole numbers from 1"),
    (["--batch-size", "8,x"], "--batch-size takes whole numbers from 1"),
    (["--stride", "1,1"], "lists a value twice"),
    (["--backend", "onnxruntime,nope"], "--backend 'nope' is not one of"),
    (["--precision", "int4"], "--precision takes fp32, bf16 or int8"),
    (["--backend", "onnxruntime", "--precision", "int8"], "--backend onnxruntime runs none of --precision int8"),
    (["--slices", "8", "--duration", "2"], "not both"),
    (["--warmup", "-1"], "--warmup must be 0 or more"),
    (["/no/such/folder"], "/no/such/folder does not exist: pass the folder"),
])
def test_bad_options_are_refused_with_one_sentence(small_bundle, args, words):
    result = _invoke(["--bundle", str(small_bundle.root), "--threads", "1", *args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.output


def small_bundle_flops(bundle) -> float:
    """FLOPs of one DeDN image counted on the torch model (hooks on every convolution): an
    independent count to hold the ONNX graph count against."""
    import torch

    from isl_rt.backends.torch import TorchBackend

    m = bundle.manifest
    runner = TorchBackend(bundle.torch_path("dedn"), input_name="masked", output_name="inpainted", channels=m.channels, size=m.size)
    total = 0.0

    def hook(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, torch.nn.ConvTranspose2d):
            total += 2.0 * module.in_channels * module.out_channels // module.groups * k * inputs[0].shape[-1] * inputs[0].shape[-2]
        elif isinstance(module, torch.nn.Conv2d):
            total += 2.0 * module.in_channels // module.groups * module.out_channels * k * output.shape[-1] * output.shape[-2]

    with runner:
        handles = [mod.register_forward_hook(hook) for mod in runner._model.modules()
                   if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        runner.infer({"masked": np.zeros((1, 2 * m.channels + 1, m.size, m.size), np.float32)})
        for handle in handles:
            handle.remove()
    return total


def test_dedn_flops_from_the_onnx_graph_match_the_torch_model(small_bundle):
    pytest.importorskip("onnx")
    m = small_bundle.manifest
    count = bench.dedn_flops(small_bundle.dedn_path, m.size, m.channels)
    assert count.flops == pytest.approx(small_bundle_flops(small_bundle), rel=1e-6)
    assert count.flops > 0 and "ONNX graph" in count.method


def test_peak_rss_is_reset_between_configurations():
    if not bench.reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    big = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    high = bench.peak_rss_mib()
    del big
    bench.reset_peak_rss()
    assert bench.peak_rss_mib() < high - 32


def test_percentiles_are_ordered_and_interpolated():
    values = bench.percentiles([1.0, 2.0, 3.0, 4.0, 100.0])
    assert values["median"] == 3.0 and values["p90"] == pytest.approx(61.6) and values["p99"] == pytest.approx(96.16)
