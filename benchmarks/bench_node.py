"""`isl-rt listen` over loopback: how soon the results of a study come back, and ten studies at once.

    python benchmarks/bench_node.py [--bundle PATH] [--series-timeout 2] [--studies 10] [--rounds 6]
        [--senders processes|threads] [--threads 0]

1. One 32-slice phantom study (seed 8002) is scored in this process with ``scan_directory`` and
   the DICOM result writer, as ``isl-rt scan --dicom-out`` does: its *scan time*.
2. ``isl-rt listen`` runs as a subprocess forwarding to a storage SCP in this process; the same
   study (new UIDs) is sent over one association. Measured: from the answer to the last C-STORE
   to both results (SR and parametric map) stored by the SCP, against the target scan time +
   series timeout + 2 s.
3. ``--studies`` copies of the study (each with its own UIDs) are sent at the same time over as
   many associations, ``--rounds`` times (new UIDs each round). Each association comes from its
   own sender process, as ten scanners would send (``--senders threads``: from threads of this
   process, where pynetdicom's requestor loses a C-STORE answer now and then; see RESULTS.md).
   Checked: every C-STORE answered success, every series one ok row, every result received
   once. The node's RSS is sampled every 0.2 s: after the single study, its peak while the
   studies are received and scored, and after each round's results are in; memory is *flat*
   when the RSS after the rounds of the later half stays within ``FLAT_MIB``.

Prints one JSON object per line: the machine, the scan-time reference, the single study, the ten
studies, then a summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SEED = 8002  # a healthy phantom head of 32 slices
#: The node's memory is flat when its RSS after each round of the later half of the rounds (at
#: least the last two) stays within this range: it stopped growing once warmed up.
FLAT_MIB = 32.0
SR = "1.2.840.10008.5.1.4.1.1.88.34"
PM = "1.2.840.10008.5.1.4.1.1.30"


def machine() -> dict[str, Any]:
    import highdicom
    import pynetdicom
    from isl_rt import bench

    return {"kind": "machine", **bench.machine(), "highdicom": highdicom.__version__, "pynetdicom": pynetdicom.__version__}


class Pacs:
    """A storage SCP recording when each object arrived."""

    def __init__(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.arrivals: list[tuple[float, str, str]] = []  # (time, SOP class, referenced series)
        self.lock = threading.Lock()
        ae = AE(ae_title="PACS")
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)])
        self.port = int(self.server.server_address[1])

    def store(self, event: Any) -> int:
        ds = event.dataset
        if ds.SOPClassUID == SR:
            source = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID
        else:
            source = ds.ReferencedSeriesSequence[0].SeriesInstanceUID
        with self.lock:
            self.arrivals.append((time.perf_counter(), str(ds.SOPClassUID), str(source)))
        return 0x0000

    def done(self, series: set[str]) -> float | None:
        """When the last of the SR and parametric map of every series in ``series`` arrived."""
        with self.lock:
            got: dict[tuple[str, str], float] = {(s, c): t for t, c, s in self.arrivals}
        times = [got.get((s, c)) for s in series for c in (SR, PM)]
        return None if any(t is None for t in times) else max(t for t in times if t is not None)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (``VmRSS``; ``RssAnon``/``RssFile`` its parts), MiB."""
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":")) / 1024


def send_study(port: int, files: list[Path]) -> tuple[list[int], float]:
    """One association sending ``files``; the statuses and when the last answer came."""
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CTImageStorage)
    datasets = [dcmread(p) for p in files]
    assoc = ae.associate("127.0.0.1", port, ae_title="ISLRT")
    if not assoc.is_established:
        raise RuntimeError("no association with isl-rt listen")
    statuses = []
    for ds in datasets:  # an answer without a Status (none within the DIMSE timeout, an abort) counts as -1
        answer = assoc.send_c_store(ds) if assoc.is_established else None
        statuses.append(int(answer.Status) if answer is not None and "Status" in answer else -1)
    last = time.perf_counter()
    assoc.release()
    return statuses, last


def send_many(port: int, studies: list[list[Path]], senders: str) -> list[list[int]]:
    """Send each study over its own association, all at once: from a process each, or from a
    thread each of this process. The statuses of each study's C-STOREs."""
    if senders == "threads":
        results: list[Any] = [None] * len(studies)

        def send_one(i: int) -> None:
            results[i] = send_study(port, studies[i])[0]

        threads = [threading.Thread(target=send_one, args=(i,)) for i in range(len(studies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results
    procs = [subprocess.Popen([sys.executable, __file__, "--send", str(port), *map(str, files)], stdout=subprocess.PIPE, text=True)
             for files in studies]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="")
    parser.add_argument("--series-timeout", type=float, default=2.0)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--senders", choices=("processes", "threads"), default="processes")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--send", nargs="+", help=argparse.SUPPRESS)  # PORT FILE...: one sender process
    args = parser.parse_args(argv)
    if args.send:
        statuses, _ = send_study(int(args.send[0]), [Path(f) for f in args.send[1:]])
        print(json.dumps(statuses))
        return 0

    from pydicom.uid import generate_uid

    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.dicom_results import DicomResultWriter, algorithm_of
    from isl_rt.io.phantom import generate_study, write_study
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    print(json.dumps(machine()), flush=True)
    work = Path(tempfile.mkdtemp(prefix="isl-node-"))
    bundle_path = Path(args.bundle) if args.bundle else default_bundle_path()
    bundle = load_bundle(bundle_path)
    study = generate_study(SEED)
    assert study.n_slices == 32, study.n_slices
    copies = []
    for i in range(1 + 1 + args.rounds * args.studies):  # the reference, the single study, the rounds
        record = write_study(study, work / "studies" / f"{i:02d}", study_uid=str(generate_uid()), series_uid=str(generate_uid()))
        copies.append((record.series_uid, sorted(record.files)))

    # 1. the scan time of the same work in this process
    with open_backends(bundle, "onnxruntime", threads=args.threads) as pair:
        scorer = Scorer(params_from_bundle(bundle), pair.dedn, pair.drn)
        began = time.perf_counter()
        summary = scan_directory(copies[0][1][0].parent, work / "reference.csv", bundle, scorer, backend_name=pair.name,
                                 resume=False, results=DicomResultWriter(work / "reference-dicom", algorithm_of(bundle)))
        scan_s = time.perf_counter() - began
    assert summary.ok == 1
    print(json.dumps({"kind": "reference", "what": "scan_directory + DICOM results of the 32-slice study in-process",
                      "slices": summary.slices, "scan_seconds": round(scan_s, 2), "stage_seconds": {k: round(v, 2) for k, v in summary.stage_seconds.items()}}), flush=True)

    # 2. the node
    pacs = Pacs()
    log = work / "listen.log"
    cmd = [sys.executable, "-c", "from isl_rt.cli import main; main()", "listen", "--store", str(work / "store"),
           "--out", str(work / "scores.csv"), "--port", "0", "--bind", "127.0.0.1", "--bundle", str(bundle_path),
           "--backend", "onnxruntime", "--threads", str(args.threads), "--series-timeout", str(args.series_timeout),
           "--forward", f"127.0.0.1:{pacs.port}:PACS"]
    with log.open("wb") as handle:
        node = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"listening on [0-9.]+:(\d+)", log.read_text())):
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"isl-rt listen did not start:\n{log.read_text()}")
            time.sleep(0.1)
        port = int(found.group(1))
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                samples.append((time.perf_counter(), rss_mib(node.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        uid, files = copies[1]
        statuses, last = send_study(port, files)
        while (done := pacs.done({uid})) is None:
            time.sleep(0.05)
        latency = done - last
        target = scan_s + args.series_timeout + 2.0
        rss_single = rss_mib(node.pid)
        single = {"kind": "single_study", "slices": len(files), "all_stored": statuses == [0] * len(files),
                  "seconds_last_slice_to_results": round(latency, 2), "series_timeout": args.series_timeout,
                  "target_seconds": round(target, 2), "within_target": latency <= target,
                  "over_scan_plus_timeout_seconds": round(latency - scan_s - args.series_timeout, 2),
                  "node_rss_mib_after": round(rss_single, 1)}
        print(json.dumps(single), flush=True)

        # 3. ten studies at once, --rounds times
        rounds = []
        rss_rounds = []
        for r in range(args.rounds):
            many = copies[2 + r * args.studies: 2 + (r + 1) * args.studies]
            began = time.perf_counter()
            results = send_many(port, [files for _, files in many], args.senders)
            received_s = time.perf_counter() - began
            while (done := pacs.done({u for u, _ in many})) is None:
                if node.poll() is not None:
                    raise RuntimeError(f"isl-rt listen died:\n{log.read_text()}")
                time.sleep(0.1)
            time.sleep(1.0)  # the worker's last writes, then a quiet sample
            rss_rounds.append(rss_mib(node.pid))
            rounds.append({"round": r + 1, "all_stored": all(st == [0] * len(f) for st, (_, f) in zip(results, many)),
                           "associations_with_failures": sum(st != [0] * len(f) for st, (_, f) in zip(results, many)),
                           "seconds_to_receive_all": round(received_s, 2), "seconds_to_all_results": round(done - began, 2),
                           "node_rss_mib_after": round(rss_rounds[-1], 1),
                           "node_rss_anon_mib": round(rss_mib(node.pid, "RssAnon"), 1),
                           "node_rss_file_mib": round(rss_mib(node.pid, "RssFile"), 1)})
            print(json.dumps({"kind": "round", **rounds[-1]}), flush=True)
        stop.set()
        sampler.join()
        with (work / "scores.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        sent = copies[1: 2 + args.rounds * args.studies]
        per_series = {u: sum(r["SeriesInstanceUID"] == u for r in rows) for u, _ in sent}
        with pacs.lock:
            objects = [(c, s) for _, c, s in pacs.arrivals]
        ten = {"kind": "many_studies", "studies": args.studies, "rounds": args.rounds, "senders": args.senders,
               "all_stored": all(r["all_stored"] for r in rounds),
               "each_scored_once": all(n == 1 for n in per_series.values()) and all(r["status"] == "ok" for r in rows),
               "each_result_received_once": len(objects) == 2 * len(sent) and len(set(objects)) == len(objects),
               "node_rss_mib_after_single_study": round(rss_single, 1),
               "node_rss_mib_peak": round(max(m for _, m in samples), 1),
               "node_rss_mib_after_each_round": [round(m, 1) for m in rss_rounds],
               "memory_flat": max(later := rss_rounds[-max(2, len(rss_rounds) // 2):]) - min(later) <= FLAT_MIB,
               "flat_mib": FLAT_MIB}
        print(json.dumps(ten), flush=True)
    finally:
        node.terminate()
        code = node.wait(120)
        pacs.server.shutdown()
    print(json.dumps({"summary": "node", "bundle": bundle.manifest.name, "within_target": single["within_target"],
                      "many_ok": ten["all_stored"] and ten["each_scored_once"] and ten["each_result_received_once"],
                      "memory_flat": ten["memory_flat"], "node_exit_code": code, "work": str(work)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
