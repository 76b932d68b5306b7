"""`isl-rt scan --engine ray`: a local Ray instance (2 CPUs, started here, loopback only) writes
the rows a local scan writes; an actor killed with SIGKILL during a scan, and a driver stopped
half way, lose and duplicate nothing."""

import csv
import importlib.util
import json
import os
import signal
import sys

import pytest
from typer.testing import CliRunner

from isl_rt.cli import app
from isl_rt.pipeline import series_json_dir

pytest.importorskip("torch")  # the small bundle is trained and exported here

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the ray extra is not installed (pip install '.[ray]')")


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _stable(rows):
    """Rows without their timing, in a fixed order."""
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rows),
                  key=lambda r: tuple(r.get(k, "") for k in ("path", "series", "slice")))


def _details(out):
    """The per-series JSON files of a scores CSV, without timings."""
    found = {}
    for path in sorted(series_json_dir(out).glob("*.json")):
        doc = json.loads(path.read_text())
        for key in ("seconds", "stage_seconds"):
            doc.pop(key, None)
        found[path.name] = doc
    return found


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Four short phantom series (ten slices each, the fewest the input gate takes for a head CT;
    one with a haemorrhage), a text file and a truncated DICOM file."""
    import dataclasses

    from isl_rt.io.phantom import generate_study, write_study

    root = tmp_path_factory.mktemp("ray") / "dicom"
    for k, disorder in enumerate((None, "intraparenchymal_haemorrhage", None, None)):
        study = generate_study(5100 + k, disorder, "large" if disorder else None)
        middle = study.n_slices // 2
        write_study(dataclasses.replace(study, hu=study.hu[middle - 5:middle + 5],
                                        lesion_mask=study.lesion_mask[middle - 5:middle + 5]), root / f"s{k}")
    (root / "notes.txt").write_text("not DICOM")
    (root / "broken.dcm").write_bytes(sorted((root / "s0").iterdir())[0].read_bytes()[:4000])
    return root


@pytest.fixture(scope="module")
def local_scan(small_bundle, tree, tmp_path_factory):
    """The reference: the tree scanned with the local engine."""
    out = tmp_path_factory.mktemp("local") / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(tree), "--out", str(out), "--bundle", str(small_bundle.root),
                                      "--backend", "onnxruntime", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    ray = pytest.importorskip("ray")
    # Ray puts the driver's working folder on its workers' sys.path: outside the checkout, so they
    # import the installed isl_rt (with its compiled extension), not the source tree
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray-driver"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        yield ray
    finally:
        ray.shutdown()
        os.chdir(before)


@needs_ray
def test_ray_scan_writes_the_rows_of_a_local_scan(small_bundle, tree, local_scan, ray_instance, tmp_path):
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(tree), "--out", str(out), "--bundle", str(small_bundle.root),
                                      "--backend", "onnxruntime", "--threads", "1", "--engine", "ray", "--actors", "2"])
    assert result.exit_code == 0, result.output
    assert "Ray: 2 actors" in result.output and "4 series scored" in result.output
    rows = _rows(out)
    assert sum(r["status"] == "ok" for r in rows) == 4 and len(rows) == 6
    assert _stable(rows) == _stable(_rows(local_scan))
    assert _stable(_rows(out.with_name("scores.slices.csv"))) == _stable(_rows(local_scan.with_name("scores.slices.csv")))
    assert _details(out) == _details(local_scan)


@needs_ray
def test_a_killed_actor_and_a_stopped_driver_lose_and_duplicate_nothing(small_bundle, tree, local_scan, ray_instance, tmp_path):
    from pathlib import Path

    from isl_rt.ray_engine import ActorSpec, RayOptions, RayPool

    out = tmp_path / "scores.csv"
    spec = ActorSpec(small_bundle.root, "onnxruntime", 1, "", 0, 16, None, None, 3, Path.cwd())
    killed = []

    def stop_driver(event):
        if event.row["status"] == "ok":
            raise KeyboardInterrupt  # the driver stops after its first series

    def kill_an_actor(event):
        if event.row["status"] == "ok" and not killed:
            os.kill(pool.pids[0], signal.SIGKILL)  # it holds the series queued on it
            killed.append(pool.pids[0])

    with RayPool(spec, RayOptions("local", 2, 0.0)) as pool:
        with pytest.raises(KeyboardInterrupt):
            pool.scan(tree, out, small_bundle, on_series=stop_driver)
        assert sum(r["status"] == "ok" for r in _rows(out)) == 1
        summary = pool.scan(tree, out, small_bundle, on_series=kill_an_actor)
        restarted = ray_instance.get(pool.actors[0].describe.remote())
        again = pool.scan(tree, out, small_bundle)
    assert killed and restarted.pid != killed[0]  # Ray restarted the actor
    assert summary.ok == 3 and summary.resumed == 3 and summary.errors == 0
    assert again.ok == 0 and again.resumed == 6
    rows = _rows(out)
    keys = [r["SeriesInstanceUID"] or r["path"] for r in rows]
    assert len(keys) == len(set(keys)) == 6
    assert _stable(rows) == _stable(_rows(local_scan))
    assert _stable(_rows(out.with_name("scores.slices.csv"))) == _stable(_rows(local_scan.with_name("scores.slices.csv")))


@needs_ray
def test_a_pool_larger_than_the_cluster_is_refused(small_bundle, tree, ray_instance, tmp_path):
    result = CliRunner().invoke(app, ["scan", str(tree), "--out", str(tmp_path / "s.csv"), "--bundle", str(small_bundle.root),
                                      "--engine", "ray", "--actors", "3", "--threads", "1"])
    assert result.exit_code == 1
    assert "--actors 3 does not fit the Ray cluster (2 CPUs, 0 GPUs)" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_without_ray_the_engine_names_the_extra(small_bundle, tree, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(app, ["scan", str(tree), "--out", str(tmp_path / "s.csv"), "--bundle", str(small_bundle.root),
                                      "--engine", "ray"])
    assert result.exit_code == 1
    assert "pip install 'isl-rt[ray]'" in result.output and "Traceback" not in result.output
