"""Export: ONNX round trips (onnxruntime vs torch ≤ 1e-4), graph clean-up, parity failures, the
bundle written from checkpoints, and the train/export CLI end to end on the phantom."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from isl_rt import kernels  # noqa: E402
from isl_rt.bundle import load_bundle  # noqa: E402
from isl_rt.cli import app  # noqa: E402
from isl_rt.errors import BundleError  # noqa: E402
from isl_rt.export import ExportError, calibrate_bundle, export_bundle, export_onnx, fold_constants  # noqa: E402
from isl_rt.models.dedn import build_dedn  # noqa: E402
from isl_rt.models.drn import build_drn  # noqa: E402

S = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_slices(n: int = 6):
    """Head-like [0,1] slices and their edges (a compact twin of the helper in test_training)."""
    from isl_rt.training.data import PrepParams, SliceSet

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:S, :S] / S - 0.5
    x = np.zeros((n, 3, S, S), np.float32)
    for i in range(n):
        r = np.hypot(xx / rng.uniform(0.3, 0.42), yy / rng.uniform(0.3, 0.42))
        texture = 0.5 + 0.2 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy)
        x[i] = np.where(r < 1, texture, 0)[None] * np.array([1.0, 0.6, 0.3], np.float32)[:, None, None]
    gy, gx = np.gradient(x, axis=(2, 3))
    edges = (np.hypot(gx, gy) > 0.05).astype(np.uint8)
    return SliceSet(x=x, edges=edges, series_index=np.zeros(n, np.int32), series=["s0"], params=PrepParams(size=S), description="synthetic")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ---- one network --------------------------------------------------------------------------------
def test_dedn_round_trip_through_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = build_dedn("tiny", 3).eval()
    example = np.random.default_rng(0).random((2, 7, S, S), dtype=np.float32)
    figures = export_onnx(model, tmp_path / "dedn.onnx", input_name="masked", output_name="inpainted", example=example)
    assert figures["max_abs_error"] <= 1e-4

    proto = onnx.load(tmp_path / "dedn.onnx")
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = [[d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim] for t in (proto.graph.input[0], proto.graph.output[0])]
    assert dims == [["batch", 7, S, S], ["batch", 3, S, S]]
    ops = {n.op_type for n in proto.graph.node}
    assert "InstanceNormalization" in ops and "Pad" in ops
    # the padding arithmetic was folded: no constant-only subgraphs are left
    assert not ops & {"Constant", "ConstantOfShape", "Concat", "Slice", "Cast"}

    other = np.random.default_rng(1).random((3, 7, S, S), dtype=np.float32)  # another batch size
    got = _session(tmp_path / "dedn.onnx").run(["inpainted"], {"masked": other})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(other)).numpy()
    assert np.max(np.abs(got - expected)) <= 1e-4


def test_drn_round_trip_through_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = build_drn("tiny", channels=3, embedding_dim=16).eval()
    example = (np.random.default_rng(0).random((2, 3, S, S), dtype=np.float32) * 0.1).astype(np.float32)
    export_onnx(model, tmp_path / "drn.onnx", input_name="difference", output_name="embedding", example=example)
    other = (np.random.default_rng(2).random((5, 3, S, S), dtype=np.float32) * 0.1).astype(np.float32)
    got = _session(tmp_path / "drn.onnx").run(["embedding"], {"difference": other})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(other)).numpy()
    assert got.shape == (5, 16) and np.max(np.abs(got - expected)) <= 1e-4


class _Drifting(torch.nn.Module):
    """A module whose eager output changes on every call: its traced graph cannot match."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.scale + float(self.calls)


def test_export_fails_with_a_sentence_when_onnxruntime_disagrees(tmp_path):
    example = np.zeros((2, 3, 4, 4), dtype=np.float32)
    with pytest.raises(ExportError, match=r"drift.onnx differs from the PyTorch network by up to .* \(more than 0.0001\)"):
        export_onnx(_Drifting(), tmp_path / "drift.onnx", input_name="a", output_name="b", example=example)


def test_fold_constants_collapses_constant_chains():
    from onnx import TensorProto, helper, numpy_helper

    two = numpy_helper.from_array(np.array([2.0], dtype=np.float32), "two")
    nodes = [
        helper.make_node("Constant", [], ["three"], value=numpy_helper.from_array(np.array([3.0], dtype=np.float32))),
        helper.make_node("Mul", ["two", "three"], ["six"]),
        helper.make_node("Add", ["x", "six"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [two],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fold_constants(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Add"]
    assert [i.name for i in model.graph.initializer] == ["six"]
    onnx.checker.check_model(model)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": np.array([1.0], np.float32)})
    assert out[0].tolist() == [7.0]


# ---- the bundle from checkpoints ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    """A tiny DeDN + DRN trained for one epoch each on synthetic slices (module-scoped: built once)."""
    from isl_rt.training.dedn import DeDNTrainConfig, train_dedn
    from isl_rt.training.drn import DRNTrainConfig, train_drn

    torch.set_num_threads(1)
    ckpt = tmp_path_factory.mktemp("ckpt")
    data = synthetic_slices(6)
    train_dedn(data, ckpt, DeDNTrainConfig(max_epochs=1, batch_size=3, feature_steps=2, feature_batch=4, k_max=4))
    train_drn(data, ckpt, DRNTrainConfig(k=2, pretrain_epochs=1, max_epochs=1, batch_size=3, queue_size=6, embedding_dim=8, projection_dim=8))
    return ckpt, data


def test_export_bundle_writes_a_valid_parity_checked_bundle(trained_ckpt, tmp_path):
    ckpt, data = trained_ckpt
    scores = [0.8, 1.0, 1.1, 0.9, 1.3]
    bundle = export_bundle(ckpt, tmp_path / "export" / "unit", healthy_scan_scores=scores, slices=data, command="pytest")
    m = bundle.manifest
    assert m.name == "unit" and m.preset == "tiny" and m.size == S and m.channels == 3
    assert m.partition.k == 2 and m.partition.groups == 4
    assert m.drn.embedding_dim == 8 and len(m.drn.centre) == 8
    assert m.threshold is not None and m.threshold.scan_score == 1.3 and m.threshold.n_healthy_scans == 5
    assert m.training.feature_network == "self-supervised" and m.training.slices == 6
    assert m.training.drn_data == "" and m.training.losses["drn"]["disorder"] == "lesion"  # the DRN saw the DeDN's slices
    assert set(m.versions) >= {"isl_rt", "torch", "onnx", "numpy"}
    assert max(m.training.losses["parity_max_abs_error"].values()) <= 1e-4
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["unit"]  # no staging folder left
    assert sorted(p.name for p in bundle.root.iterdir()) == ["dedn.onnx", "dedn.pt", "drn.onnx", "drn.pt", "manifest.json"]

    # the runtime's own data flow on the exported files reproduces torch's slice scores
    from isl_rt.training.dedn import load_dedn
    from isl_rt.training.drn import load_drn

    partition = bundle.partition()
    gm = partition.group_map(S)
    fan = kernels.fanout(data.x, data.edges, gm, partition.groups)
    xhat = _session(bundle.dedn_path).run(["inpainted"], {"masked": fan})[0]
    _, dif = kernels.compose_diff(data.x, xhat, gm, partition.groups)
    h = _session(bundle.drn_path).run(["embedding"], {"difference": dif})[0]
    scores_onnx = np.linalg.norm(h - bundle.centre, axis=1)
    dedn, _ = load_dedn(ckpt / "dedn_best.pt")
    drn, meta = load_drn(ckpt / "drn_best.pt")
    with torch.no_grad():
        xhat_t = dedn(torch.from_numpy(fan)).numpy()
        _, dif_t = kernels.compose_diff(data.x, xhat_t, gm, partition.groups)
        h_t = drn(torch.from_numpy(dif_t)).numpy()
    scores_torch = np.linalg.norm(h_t - np.asarray(meta["centre"], np.float32), axis=1)
    np.testing.assert_allclose(scores_onnx, scores_torch, atol=1e-4)


def test_export_without_scores_is_uncalibrated_until_calibrated(trained_ckpt, tmp_path):
    ckpt, data = trained_ckpt
    bundle = export_bundle(ckpt, tmp_path / "b", slices=data)
    assert bundle.manifest.threshold is None
    calibrated = calibrate_bundle(bundle.root, [1.0, 2.0, 3.0])
    assert calibrated.require_threshold().scan_score == 3.0
    assert calibrated.manifest.files == bundle.manifest.files  # the networks are untouched


def test_export_notes_reach_the_manifest_info_and_survive_calibration(trained_ckpt, tmp_path):
    from typer.testing import CliRunner

    from isl_rt.cli import app

    ckpt, data = trained_ckpt
    notes = "Data: PHE-SICH-CT-IDS (CC BY-NC 4.0): non-commercial use only.\nSplit: seed 0."
    bundle = export_bundle(ckpt, tmp_path / "b", slices=data, notes=notes)
    assert load_bundle(bundle.root).manifest.training.notes == notes
    calibrated = calibrate_bundle(bundle.root, [1.0, 2.0])
    assert calibrated.manifest.training.notes == notes
    shown = CliRunner().invoke(app, ["info", "--bundle", str(bundle.root)])
    assert shown.exit_code == 0 and "    Data: PHE-SICH-CT-IDS (CC BY-NC 4.0): non-commercial use only." in shown.output
    assert "    Split: seed 0." in shown.output


def test_export_with_a_scoring_callable_scores_the_written_bundle(trained_ckpt, tmp_path):
    ckpt, data = trained_ckpt
    seen = []

    def score_scans(bundle):
        seen.append(load_bundle(bundle.root).manifest.threshold)
        return [0.5, 0.7]

    bundle = export_bundle(ckpt, tmp_path / "b", slices=data, score_scans=score_scans)
    assert seen == [None] and bundle.require_threshold().scan_score == 0.7


def test_export_refuses_a_drn_trained_on_another_dedn(trained_ckpt, tmp_path):
    ckpt, data = trained_ckpt
    other = tmp_path / "other"
    other.mkdir()
    for name in ("drn_best.pt",):
        (other / name).write_bytes((ckpt / name).read_bytes())
    state = torch.load(ckpt / "dedn_best.pt", weights_only=True)
    state["epoch"] = 99  # a different DeDN checkpoint file
    torch.save(state, other / "dedn_best.pt")
    with pytest.raises(ExportError, match="another DeDN"):
        export_bundle(other, tmp_path / "b", slices=data)
    with pytest.raises(BundleError, match="does not exist"):
        export_bundle(tmp_path / "empty", tmp_path / "c", slices=data)


def test_export_records_the_cavity_and_refuses_a_drn_of_original_slices(trained_ckpt, tmp_path):
    from isl_rt.bundle import DEFAULT_CAVITY
    from isl_rt.training.drn import DRNTrainConfig, train_drn

    ckpt, data = trained_ckpt
    bundle = export_bundle(ckpt, tmp_path / "b", slices=data)
    assert bundle.manifest.cavity == DEFAULT_CAVITY
    sliced = tmp_path / "sliced"
    sliced.mkdir()
    (sliced / "dedn_best.pt").write_bytes((ckpt / "dedn_best.pt").read_bytes())
    train_drn(data, sliced, DRNTrainConfig(k=2, pretrain_epochs=1, max_epochs=1, batch_size=3, queue_size=6,
                                           embedding_dim=8, projection_dim=8, input="slice"))
    with pytest.raises(ExportError, match="original slices"):
        export_bundle(sliced, tmp_path / "c", slices=data)


def test_parity_inputs_are_real_slices_fanned_out_with_the_bundle_partition(trained_ckpt):
    ckpt, data = trained_ckpt
    from isl_rt.export import _parity_inputs
    from isl_rt.kernels.partition import Partition

    fan, dif = _parity_inputs(ckpt, Partition.cells(2), 3, S, 2, data)
    assert fan.shape == (2 * 4, 7, S, S) and dif.shape == (2, 3, S, S)
    gm = Partition.cells(2).group_map(S)
    holes = np.stack([(gm == g) for g in range(4)]).astype(np.float32)
    assert np.array_equal(fan[:, 3], np.concatenate([holes, holes]))  # the 1 - m channel, slice by slice
    # they are the training slices with the most head in them, with their own difference images
    foreground = (data.x.max(axis=1) > 0.05).mean(axis=(1, 2))
    chosen = np.sort(np.argsort(-foreground, kind="stable")[:2])
    assert np.array_equal(dif, np.load(ckpt / "differences" / "dif.npy")[chosen])
    assert np.array_equal(fan[0, :3], data.x[chosen[0]] * (gm != 0)[None])


# ---- CLI end to end on the phantom ------------------------------------------------------------------
def test_cli_train_and_export_on_the_phantom(tmp_path):
    runner = CliRunner()
    ckpt = tmp_path / "ckpt"
    common = ["--threads", "1", "--seed", "0"]
    r = runner.invoke(app, ["train", "dedn", "phantom:2", "--ckpt", str(ckpt), "--size", "32", "--max-epochs", "1",
                            "--batch-size", "4", "--steps-per-epoch", "2", "--feature-steps", "2", *common])
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output and (ckpt / "dedn_best.pt").is_file() and (ckpt / "data" / "x.npy").is_file()
    r = runner.invoke(app, ["train", "drn", "phantom:2", "--ckpt", str(ckpt), "--k", "2", "--pretrain-epochs", "1",
                            "--max-epochs", "1", "--batch-size", "4", "--steps-per-epoch", "2", "--embedding-dim", "8",
                            "--cavity-sides", "3", "--cavity-largest", *common])
    assert r.exit_code == 0, r.output
    scores = tmp_path / "healthy.txt"
    scores.write_text("0.5\n0.6\n0.7\n")
    out = tmp_path / "export" / "phantom"
    r = runner.invoke(app, ["export", str(ckpt), "--out", str(out), "--calibration-scores", str(scores)])
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output
    r = runner.invoke(app, ["info", "--bundle", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["threshold"]["scan_score"] == 0.7 and summary["size"] == 32
    from isl_rt.training.data import DEFAULT_CANNY

    assert summary["canny"] == {"sigma": DEFAULT_CANNY.sigma, "low": DEFAULT_CANNY.low, "high": DEFAULT_CANNY.high}
    assert summary["windows"] == ["brain 40/80", "subdural 75/215", "bone 600/2800"]
    assert summary["cavity"] == {"window": "bone", "bone_hu": 300.0, "margin": 2, "sides": 3, "largest": True, "air_margin": 0}
    text = runner.invoke(app, ["info", "--bundle", str(out)]).output
    assert "bone reached on at least 3 of the four sides; only the component with the most fully enclosed" in text
    # resuming a finished run does nothing more and says so through the same verdict line
    r = runner.invoke(app, ["train", "dedn", "phantom:2", "--ckpt", str(ckpt), "--size", "32", "--max-epochs", "1",
                            "--batch-size", "4", "--steps-per-epoch", "2", "--feature-steps", "2", "--resume", *common])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "dedn", "phantom:2", "--ckpt", str(ckpt), "--size", "32"])
    assert r.exit_code == 1 and "pass --resume" in r.output


def test_cli_user_errors_are_sentences(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", "dedn", "phantom:x", "--ckpt", str(tmp_path), "--loss-weights", "1,2"])
    assert r.exit_code == 1 and r.output.startswith("error: --loss-weights takes 4")
    r = runner.invoke(app, ["train", "dedn", "phantom:1", "--ckpt", str(tmp_path), "--windows", "brain:40"])
    assert r.exit_code == 1 and "NAME:LEVEL:WIDTH" in r.output
    r = runner.invoke(app, ["train", "dedn", "phantom:1", "--ckpt", str(tmp_path), "--device", "tpu"])
    assert r.exit_code == 1 and "--device must be cpu, cuda or cuda:N" in r.output
    r = runner.invoke(app, ["export", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "dedn_best.pt does not exist" in r.output


def test_manifest_names_the_drn_data_only_when_it_differs_from_the_dedn_data():
    from isl_rt.export import _drn_data

    dedn = {"data": "100 healthy phantom studies (seed 1000)", "series": 100, "slices": 3194, "excluded": {}}
    assert _drn_data(dedn, dict(dedn)) == ""
    drn = {"data": "40 healthy phantom studies (seed 3000)", "series": 40, "slices": 1282}
    assert _drn_data(dedn, drn) == "40 healthy phantom studies (seed 3000) (40 series, 1282 slices)"
    # --max-series on the DeDN's own data: the same words, fewer series
    assert _drn_data(dedn, {**dedn, "series": 40, "slices": 1279}) == "100 healthy phantom studies (seed 1000) (40 series, 1279 slices)"
