"""The DICOM node command: `listen`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from isl_rt.cli._app import app, command_line, user_errors


@app.command()
@user_errors
def listen(
    store: Annotated[Path, typer.Option("--store", help="Folder for received instances, results and the outbox (created if missing).")],
    out: Annotated[Path, typer.Option("--out", help="Scores CSV, one row per series; per-series JSON go to <stem>.series/ beside it.")] = Path("scores.csv"),
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on (0 = any free port, logged at start).")] = 11112,
    ae_title: Annotated[str, typer.Option("--ae-title", help="This node's AE title (1-16 characters).")] = "ISLRT",
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on. The default 0.0.0.0 is every network interface: anyone who can reach the port can send studies (any calling AE title is accepted). --bind 127.0.0.1 listens on loopback only, for senders on this machine.")] = "0.0.0.0",
    forward: Annotated[str | None, typer.Option("--forward", help="HOST:PORT:AET to send the DICOM results to by C-STORE (retried, kept across restarts).")] = None,
    series_timeout: Annotated[float, typer.Option("--series-timeout", help="A series is complete after this many seconds without a new instance of it.")] = 10.0,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Model bundle folder; default the shipped head-ct-tiny.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, tensorrt, onnxruntime, onnxruntime-cuda, torch or torch-cuda.")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for inference; 0 = all.")] = 0,
) -> None:
    """Run a DICOM node: receive studies by C-STORE, score each complete CT series, write scores.csv rows and DICOM results (TID 1500 SR + Parametric Map), forward them. Stops cleanly on SIGTERM or Ctrl-C."""
    import logging
    import signal
    import threading
    import time

    from isl_rt.errors import IslError

    start = time.perf_counter()
    if not 0 < len(ae_title) <= 16:
        raise IslError(f"--ae-title must be 1-16 characters, got '{ae_title}'.")
    if series_timeout < 0:
        raise IslError(f"--series-timeout must be 0 or more seconds, got {series_timeout}.")
    try:
        from isl_rt.dicom_results import algorithm_of
        from isl_rt.node import Destination, Node, NodeConfig
    except ImportError as err:
        raise IslError(f"isl-rt listen needs the dicom-node extra ({err.name} is missing): run pip install 'isl-rt[dicom-node]'.") from None
    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.pipeline import Scorer, params_from_bundle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s isl-rt listen: %(message)s")
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # the node logs its own line for each failure
    config = NodeConfig(store=store, out_csv=out, port=port, ae_title=ae_title, bind=bind, series_timeout=series_timeout,
                        forward=Destination.parse(forward) if forward else None)
    loaded = load_bundle(bundle if bundle is not None else default_bundle_path())
    pair = open_backends(loaded, backend, threads=threads)
    logging.getLogger("isl_rt.node").info("bundle %s (%s); backend: %s", loaded.manifest.name, loaded.root, pair.description)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with pair:
        node = Node(config, loaded, Scorer(params_from_bundle(loaded), pair.dedn, pair.drn), algorithm_of(loaded), backend_name=pair.name)
        node.serve(stop)
    typer.echo(f"PASSED | {time.perf_counter() - start:.1f} s | {command_line()}", err=True)
