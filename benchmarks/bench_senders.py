"""Ten associations at once into a bare pynetdicom storage SCP (no isl-rt code on the receiving
side): sent from ten threads of one process, or from ten processes. How many associations lose
a C-STORE answer (the sender's 30 s DIMSE timeout, then an abort)?

    python benchmarks/bench_senders.py [--runs 10] [--studies 10] [--senders threads,processes]

The receiver is a subprocess running a storage SCP that writes and fsyncs each instance, as
`isl-rt listen` does, and answers success. Each run sends ``--studies`` copies of the 32-slice
phantom study (seed 8002), each over its own association, all at once
(``bench_node.send_many``). Prints one JSON line per run and a summary per kind of sender.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCP = """
import os, sys
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
out = sys.argv[1]
def store(event):
    with open(os.path.join(out, event.request.AffectedSOPInstanceUID + '.dcm'), 'wb') as handle:
        handle.write(event.encoded_dataset())
        handle.flush()
        os.fsync(handle.fileno())
    return 0x0000
ae = AE(ae_title='ISLRT')
ae.maximum_associations = 16
for context in AllStoragePresentationContexts:
    ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
server = ae.start_server(('127.0.0.1', 0), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
print('listening on port', server.server_address[1], flush=True)
sys.stdin.read()
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--senders", default="threads,processes")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from bench_node import SEED, machine, send_many
    from pydicom.uid import generate_uid

    from isl_rt.io.phantom import generate_study, write_study

    print(json.dumps(machine()), flush=True)
    work = Path(tempfile.mkdtemp(prefix="isl-senders-"))
    (work / "received").mkdir()
    study = generate_study(SEED)
    studies = [sorted(write_study(study, work / "studies" / f"{i:02d}", study_uid=str(generate_uid()),
                                  series_uid=str(generate_uid())).files) for i in range(args.studies)]
    scp = subprocess.Popen([sys.executable, "-c", SCP, str(work / "received")], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        found = re.search(r"port (\d+)", scp.stdout.readline() if scp.stdout else "")
        if not found:
            raise RuntimeError("the storage SCP did not start")
        port = int(found.group(1))
        totals = {}
        for kind in args.senders.split(","):
            failed = 0
            for run in range(args.runs):
                began = time.perf_counter()
                statuses = send_many(port, studies, kind)
                bad = sum(st != [0] * len(files) for st, files in zip(statuses, studies))
                failed += bad
                print(json.dumps({"kind": "run", "senders": kind, "run": run, "associations": len(studies),
                                  "associations_with_failures": bad, "seconds": round(time.perf_counter() - began, 2)}),
                      flush=True)
            totals[kind] = {"associations": args.runs * len(studies), "associations_with_failures": failed}
        print(json.dumps({"summary": "senders", **totals}), flush=True)
    finally:
        if scp.stdin:
            scp.stdin.close()
        scp.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
