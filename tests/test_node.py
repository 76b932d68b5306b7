"""`isl-rt listen` over loopback with real associations: the node runs as a subprocess, the test
is the scanner (pynetdicom, and dcmtk's storescu where installed) and the PACS (its own storage
SCP), and reads what comes back with pydicom and highdicom."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import MRImageStorage, generate_uid

pytest.importorskip("torch")  # the small bundle is trained and exported here
hd = pytest.importorskip("highdicom")
pynetdicom = pytest.importorskip("pynetdicom")

from pynetdicom import AE, AllStoragePresentationContexts, StoragePresentationContexts, evt  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    Verification,
)

from isl_rt.dicom_results import MAP_FILE, NOT_ASSESSED, REPORT_FILE, SCAN_SCORE, SLICE_SCORE, algorithm_of  # noqa: E402
from isl_rt.node import Destination  # noqa: E402
from isl_rt.outputs import safe_name  # noqa: E402
from isl_rt.pipeline import series_json_dir  # noqa: E402

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


# ---- the PACS: a storage SCP in the test process ----------------------------------------------
class Pacs:
    def __init__(self, port: int = 0) -> None:
        self.received: list[pydicom.Dataset] = []
        self._lock = threading.Lock()
        ae = AE(ae_title="PACS")
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = int(self.server.server_address[1])

    def _store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.received.append(ds)
        return 0x0000

    def wait_for(self, n: int, timeout: float) -> list[pydicom.Dataset]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.1)
        raise AssertionError(f"the PACS received {len(self.received)} objects in {timeout} s, expected {n}")

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def pacs():
    server = Pacs()
    yield server
    server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the node: `isl-rt listen` as a subprocess -------------------------------------------------
class Listener:
    def __init__(self, bundle, store: Path, out: Path, log: Path, *, forward: str | None, timeout: float) -> None:
        self.log = log
        args = [sys.executable, "-c", "from isl_rt.cli import main; main()", "listen", "--store", str(store), "--out", str(out),
                "--port", "0", "--bind", "127.0.0.1", "--bundle", str(bundle.root), "--threads", "1",
                "--series-timeout", str(timeout), "--backend", "onnxruntime"]
        if forward:
            args += ["--forward", forward]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        self.offset = log.stat().st_size if log.exists() else 0
        self.handle = log.open("ab")
        # run outside the checkout: from its root `python -c` would import the uncompiled source tree
        self.proc = subprocess.Popen(args, stdout=self.handle, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        self.port = int(self.wait_for_log(r"listening on [0-9.]+:(\d+)", 60).group(1))

    def text(self) -> str:
        return self.log.read_bytes()[self.offset:].decode(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"isl-rt listen exited with {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.1)
        raise AssertionError(f"no '{pattern}' in the log after {timeout} s:\n{self.text()}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.handle.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.handle.close()


@pytest.fixture
def listeners():
    started: list[Listener] = []

    def start(*args, **kwargs) -> Listener:
        node = Listener(*args, **kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        if node.proc.poll() is None:
            node.kill9()


# ---- the scanner -------------------------------------------------------------------------------
#: the scanner's ACSE, DIMSE and network timeouts: on a loaded machine the node (writing each
#: instance durably, scoring another series) may answer a C-STORE after pynetdicom's default 30 s
ASSOCIATION_TIMEOUT_S = 300.0


def scanner_ae(calling: str = "SCANNER") -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ASSOCIATION_TIMEOUT_S
    return ae


def _state(assoc) -> str:
    return "aborted" if assoc.is_aborted else "rejected" if assoc.is_rejected else "released" if assoc.is_released else "open"


def response_status(assoc, response, what: str) -> int:
    """The status of a DIMSE response; a clear failure when there is none (pynetdicom answers a
    timeout or an abort with an empty data set)."""
    assert "Status" in response, (f"{what}: no response with a status within {ASSOCIATION_TIMEOUT_S:g} s "
                                  f"(association {_state(assoc)})")
    return int(response.Status)


def send(port: int, datasets, *, calling: str = "SCANNER") -> list[int]:
    ae = scanner_ae(calling)
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", port, ae_title="ISLRT")
    assert assoc.is_established, f"no association with the node on port {port} ({_state(assoc)})"
    try:
        return [response_status(assoc, assoc.send_c_store(ds), f"C-STORE of instance {i + 1} of {len(datasets)}")
                for i, ds in enumerate(datasets)]
    finally:
        if assoc.is_established:
            assoc.release()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _wait_rows(path: Path, predicate, timeout: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            rows = _rows(path)
            if predicate(rows):
                return rows
        time.sleep(0.1)
    raise AssertionError(f"{path}: rows never matched: {_rows(path) if path.exists() else 'no file'}")


def _junk(ct_file: Path, tmp_path: Path) -> tuple[Path, pydicom.Dataset]:
    """An MR image written to a file (for storescu) and a CT slice whose PixelData is cut in half."""
    mr = pydicom.dcmread(ct_file)
    mr.SOPClassUID = mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
    mr.Modality = "MR"
    mr.SeriesInstanceUID = generate_uid()
    mr.SOPInstanceUID = mr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    mr_path = tmp_path / "mr" / "mr.dcm"
    mr_path.parent.mkdir()
    mr.save_as(mr_path, enforce_file_format=True)
    broken = pydicom.dcmread(ct_file)
    broken.SeriesInstanceUID = generate_uid()
    broken.SOPInstanceUID = generate_uid()
    broken.PixelData = broken.PixelData[: len(broken.PixelData) // 2]
    return mr_path, broken


def _dcmtk_storescu() -> str | None:
    """dcmtk's storescu (pynetdicom installs a Python one of the same name: find dcmtk's by dcmdump)."""
    dcmdump = shutil.which("dcmdump")
    if dcmdump is None:
        return None
    candidate = Path(dcmdump).with_name("storescu")
    return str(candidate) if candidate.exists() else None


def _dciodvfy_errors(path: Path) -> list[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _check_frames(pm: pydicom.Dataset, study: list[pydicom.Dataset]) -> None:
    """Each frame of the map references one source slice and lies where that slice lies."""
    position = {ds.SOPInstanceUID: [float(v) for v in ds.ImagePositionPatient] for ds in study}
    sources = []
    for frame in pm.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], position[uid], atol=1e-3)
        sources.append(uid)
    assert sorted(sources) == sorted(position)


# ---- tests -------------------------------------------------------------------------------------
def test_destination_parsing():
    assert Destination.parse("pacs.local:104:PACS") == Destination("pacs.local", 104, "PACS")
    assert str(Destination.parse("::1:11112:ARCHIVE")) == "ARCHIVE@::1:11112"
    for bad in ("pacs:104", "pacs:x:PACS", "pacs:104:", "pacs:104:AN_AE_TITLE_TOO_LONG"):
        with pytest.raises(Exception, match="HOST:PORT:AET"):
            Destination.parse(bad)


def _result_file(path: Path, sop_class: str) -> Path:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_the_forwarder_keeps_what_the_destination_cannot_take(tmp_path):
    from pynetdicom.sop_class import Comprehensive3DSRStorage  # type: ignore[attr-defined]

    from isl_rt.node import Forwarder

    outbox = tmp_path / "outbox"
    outbox.mkdir()
    sr = _result_file(outbox / "a-sr.dcm", COMPREHENSIVE_3D_SR)
    pm = _result_file(outbox / "a-pm.dcm", PARAMETRIC_MAP)
    received = []
    ae = AE(ae_title="PACS")
    ae.add_supported_context(Comprehensive3DSRStorage)  # a PACS that takes SRs but no parametric maps
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, lambda event: received.append(event.dataset.SOPInstanceUID) or 0)])
    try:
        forwarder = Forwarder(outbox, Destination("127.0.0.1", int(server.server_address[1]), "PACS"), "ISLRT")
        assert forwarder.send_once() is False
        assert forwarder.pending() == [pm] and len(received) == 1 and not sr.exists()
    finally:
        server.shutdown()


def test_the_forwarder_keeps_a_result_the_destination_never_answered(tmp_path, monkeypatch):
    """A DIMSE timeout or an abort: pynetdicom returns a data set without Status. The result stays
    in the outbox for the next try; nothing raises."""
    from isl_rt import node as node_module
    from isl_rt.node import Forwarder

    class Association:
        is_established, is_rejected, is_aborted = True, False, False

        def send_c_store(self, path):
            self.is_established, self.is_aborted = False, True  # as after a DIMSE timeout
            return pydicom.Dataset()

        def release(self):
            raise AssertionError("an aborted association is not released")

    class SilentAE:
        def __init__(self, ae_title):
            pass

        def add_requested_context(self, *args):
            pass

        def associate(self, host, port, ae_title):
            return Association()

    monkeypatch.setattr(node_module, "AE", SilentAE)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    sr = _result_file(outbox / "a-sr.dcm", COMPREHENSIVE_3D_SR)
    forwarder = Forwarder(outbox, Destination("127.0.0.1", 104, "PACS"), "ISLRT")
    assert forwarder.send_once() is False and forwarder.pending() == [sr]


def test_a_series_with_an_instance_being_stored_is_never_complete():
    """On a loaded machine one durable write can outlast --series-timeout: the series waits for it."""
    from isl_rt.node import SeriesTracker

    tracker = SeriesTracker(0.05)
    a, b = Path("study/a"), Path("study/b")
    tracker.arrived(a)
    tracker.storing(a)  # the next instance of a, still being written
    tracker.storing(b)  # the first instance of b
    time.sleep(0.1)
    assert tracker.due() == [] and tracker.pending() == 2
    tracker.arrived(a)
    tracker.abandoned(b)  # its write failed: nothing of b to score
    time.sleep(0.1)
    assert tracker.due() == [a] and tracker.pending() == 0


def test_listen_says_when_its_port_is_taken(small_bundle, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-c", "from isl_rt.cli import main; main()", "listen", "--store", str(tmp_path / "store"),
                              "--out", str(tmp_path / "scores.csv"), "--port", str(port), "--bind", "127.0.0.1",
                              "--bundle", str(small_bundle.root), "--threads", "1"], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
    assert run.returncode == 1 and f"error: Cannot listen on 127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr


def test_listen_scores_a_study_and_sends_its_results_back(small_bundle, phantom_cohort, pacs, listeners, tmp_path):
    store, out, log = tmp_path / "store", tmp_path / "scores.csv", tmp_path / "listen.log"
    node = listeners(small_bundle, store, out, log, forward=f"127.0.0.1:{pacs.port}:PACS", timeout=4.0)  # a gap between instances on a loaded machine must not split the series
    files = sorted((phantom_cohort / "series_0001").glob("*.dcm"))
    study = [pydicom.dcmread(p) for p in files]
    mr_path, broken = _junk(files[0], tmp_path)

    # Services other than storage are refused at negotiation (abstract syntax not supported).
    ae = scanner_ae()
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="ISLRT")
    assert assoc.is_established
    assert [c.result for c in assoc.rejected_contexts] == [3]  # 3: abstract syntax not supported
    assert response_status(assoc, assoc.send_c_echo(), "C-ECHO") == 0
    assoc.release()

    assert send(node.port, study) == [0] * len(study)
    assert send(node.port, [broken]) == [0]  # stored: the scoring worker, not the network side, judges pixel data
    storescu = _dcmtk_storescu()
    if storescu:  # dcmtk as the sender, as in the README: a folder, scanned recursively
        run = subprocess.run([storescu, "-aet", "CONSOLE", "-aec", "ISLRT", "+sd", "+r", "127.0.0.1", str(node.port), str(mr_path.parent)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
    else:
        assert send(node.port, [pydicom.dcmread(mr_path)]) == [0]

    got = pacs.wait_for(2, timeout=120)
    rows = _wait_rows(out, lambda r: len(r) == 3, timeout=30)
    by_status = {s: [r for r in rows if r["status"] == s] for s in ("ok", "error", "skipped")}
    assert [len(by_status[s]) for s in ("ok", "error", "skipped")] == [1, 1, 1], rows
    assert "PixelData" in by_status["error"][0]["error"] and "MR" in by_status["skipped"][0]["error"]
    row = by_status["ok"][0]
    assert row["SeriesInstanceUID"] == study[0].SeriesInstanceUID and int(row["n_slices"]) == len(study)
    detail = json.loads((series_json_dir(out) / f"{safe_name(row['SeriesInstanceUID'])}.json").read_text())

    sr = next(ds for ds in got if ds.SOPClassUID == COMPREHENSIVE_3D_SR)
    pm = next(ds for ds in got if ds.SOPClassUID == PARAMETRIC_MAP)
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    groups = report.content.get_image_measurement_groups()
    assert groups[0].get_measurements(name=SCAN_SCORE)[0].value == pytest.approx(float(row["scan_score"]), rel=1e-6)
    # the slices without a cranial cavity carry no score ("not assessed"), as in the per-series JSON
    slice_scores = [g.get_measurements(name=SLICE_SCORE)[0].value for g in groups[1:] if g.get_measurements(name=SLICE_SCORE)]
    np.testing.assert_allclose(slice_scores, [s for s in detail["slice_scores"] if s is not None], rtol=1e-6)
    # Both objects belong to the source study and reference the source slices.
    source_uids = [ds.SOPInstanceUID for ds in study]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert sorted(i.ReferencedSOPInstanceUID for i in evidence) == sorted(source_uids)
    _check_frames(pm, study)
    assert pm.NumberOfFrames == len(study) and (pm.Rows, pm.Columns) == (study[0].Rows, study[0].Columns)
    for ds in (sr, pm):
        assert ds.StudyInstanceUID == study[0].StudyInstanceUID and ds.PatientID == study[0].PatientID
        assert ds.SeriesInstanceUID != study[0].SeriesInstanceUID
        equipment = ds.ContributingEquipmentSequence[-2]  # ours, before highdicom's own item
        assert equipment.DeviceUID == algorithm_of(small_bundle).device_uid
    for path in sorted((store / "results").rglob("*.dcm")):
        if shutil.which("dciodvfy"):
            assert _dciodvfy_errors(path) == [], path
    assert {p.name for p in (store / "results" / safe_name(row["SeriesInstanceUID"])).iterdir()} == {REPORT_FILE, MAP_FILE}

    assert node.terminate() == 0
    text = node.text()
    assert re.search(r"association SCANNER@127\.0\.0\.1:\d+ released: %d instances stored, 0 refused, 1 series" % len(study), text)
    assert len(re.findall(r"association \S+ released", text)) == 4  # negotiation check, study, broken, MR
    assert len(re.findall(r"isl-rt listen: series ", text)) == 3  # one line per series
    assert "forward: 2 results sent to PACS@127.0.0.1" in text and "stopped" in text
    assert not list((store / "outbox").iterdir())


def _head_sized(ds):
    ds.PixelSpacing = [4.0, 4.0]


def test_listen_loses_nothing_to_kill_9_and_scores_each_series_once(small_bundle, dicom_factory, listeners, tmp_path):
    # a head the input gate accepts: 12 slices of 5 mm, a 256 mm field of view
    written = dicom_factory.series(tmp_path / "study", n=12, rows=64, cols=64, spacing=5.0, mutate=_head_sized)
    study = [pydicom.dcmread(p) for p in written.files]
    frame_of_reference = generate_uid()
    for ds in study:  # the factory's slices lack it; a parametric map needs it
        ds.FrameOfReferenceUID = frame_of_reference
    store, out, log = tmp_path / "store", tmp_path / "scores.csv", tmp_path / "listen.log"
    pacs_port = _free_port()  # the PACS is down at first: results wait in the outbox
    forward = f"127.0.0.1:{pacs_port}:PACS"

    first = listeners(small_bundle, store, out, log, forward=forward, timeout=3.0)
    assert send(first.port, study[:5]) == [0] * 5
    first.kill9()  # before the series timeout: five instances stored, nothing scored
    assert not out.exists() or not _rows(out)

    second = listeners(small_bundle, store, out, log, forward=forward, timeout=6.0)
    assert "1 stored series from an earlier run to score" in second.text()
    assert send(second.port, study[5:]) == [0] * (len(study) - 5)
    rows = _wait_rows(out, lambda r: len(r) == 1, timeout=60)
    assert rows[0]["status"] == "ok" and int(rows[0]["n_slices"]) == len(study)  # the five from before the kill are there
    second.wait_for_log(r"forward: retrying in", timeout=30)
    assert len(list((store / "outbox").glob("*.dcm"))) == 2

    second.kill9()  # with the results still in the outbox

    pacs = Pacs(pacs_port)
    try:
        third = listeners(small_bundle, store, out, log, forward=forward, timeout=0.5)
        assert "outbox: 2 results from an earlier run" in third.text()
        got = pacs.wait_for(2, timeout=60)
        assert send(third.port, study[:1]) == [0]  # a late copy of one instance: stored, the series is not scored again
        third.wait_for_log(r"already scored", timeout=30)
        assert third.terminate() == 0
    finally:
        pacs.close()
    assert len(_rows(out)) == 1 and len(got) == 2 and len(pacs.received) == 2
    assert sorted(ds.SOPClassUID for ds in got) == sorted([COMPREHENSIVE_3D_SR, PARAMETRIC_MAP])
    pm = next(ds for ds in got if ds.SOPClassUID == PARAMETRIC_MAP)
    _check_frames(pm, study)
    assert not list((store / "outbox").glob("*.dcm"))


def test_listen_with_the_real_bundle_scores_dicom_through_its_brain_window(phantom_cohort, pacs, listeners, tmp_path):
    """The real-data bundle (pre-windowed images, with a brain window) as the node's bundle: a CT study
    sent over the network is scored, and its SR, forwarded to the PACS, flags each slice at the
    bundle's slice threshold."""
    from pydicom.sr.codedict import codes

    from isl_rt.bundle import default_bundle_path, load_bundle

    bundle = load_bundle(default_bundle_path("head-ct-real-tiny"))
    store, out, log = tmp_path / "store", tmp_path / "scores.csv", tmp_path / "listen.log"
    node = listeners(bundle, store, out, log, forward=f"127.0.0.1:{pacs.port}:PACS", timeout=4.0)
    study = [pydicom.dcmread(p) for p in sorted((phantom_cohort / "series_0001").glob("*.dcm"))]
    assert send(node.port, study) == [0] * len(study)
    got = pacs.wait_for(2, timeout=180)
    (row,) = _wait_rows(out, lambda r: len(r) == 1, timeout=30)
    assert row["status"] == "ok", row
    assert int(row["n_slices"]) == len(study), row  # scored whole: no gap split the series
    detail = json.loads((series_json_dir(out) / f"{safe_name(row['SeriesInstanceUID'])}.json").read_text())
    assert detail["hu_window"] == {"level": 40.0, "width": 120.0} and detail["bundle"] == "head-ct-real-tiny"
    report = hd.sr.Comprehensive3DSR.from_dataset(next(ds for ds in got if ds.SOPClassUID == COMPREHENSIVE_3D_SR))
    per_slice = report.content.get_image_measurement_groups()[1:]
    threshold = bundle.manifest.slice_threshold.slice_score
    flags = [g.get_qualitative_evaluations(name=codes.SCT.Finding)[0].value for g in per_slice]
    assert flags == [NOT_ASSESSED if s is None else codes.SCT.Abnormal if s > threshold else codes.DCM.NoAbnormality
                     for s in detail["slice_scores"]]
    assert node.terminate() == 0
