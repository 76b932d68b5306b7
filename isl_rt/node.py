"""`isl-rt listen`: a DICOM node beside a scanner. Studies come in by C-STORE, complete series are
scored by one worker, and the results go out as DICOM objects (and, with a destination, by C-STORE).

::

    C-STORE in ─> durable store ─> series complete after --series-timeout idle seconds
      ─> scoring queue ─> one scoring worker: scan_directory(series folder) -> scores.csv row,
         per-series JSON, DICOM results (TID 1500 SR + Parametric Map)
      ─> outbox ─> forwarder: C-STORE to the destination, retried with backoff

Store layout (``--store DIR``)::

    DIR/incoming/<study>/<series>/<sop>.dcm    every instance received, as the sender encoded it
    DIR/incoming/<study>/<series>/.scored      the series went through the scoring worker
    DIR/results/<series>/*.dcm                 its DICOM results
    DIR/outbox/*.dcm                           results not yet accepted by the destination (hard links)

Decisions, in one place:

- An instance is written to a temporary file, fsynced, renamed into place and its folder fsynced
  before the C-STORE is answered with success; a failed write answers 0xA700 (out of resources).
  Every storage SOP class is accepted and stored; only axial CT series are scored (the others
  become ``skipped`` rows, unreadable ones ``error`` rows, as in ``isl-rt scan``). Other
  services (query/retrieve, worklists, ...) are refused at association negotiation.
- The C-STORE handler only writes and notes the arrival; the worker thread does the scoring, so
  an association never waits on inference.
- A series is complete when no instance of it arrived for ``series_timeout`` seconds and none is
  being stored (a durable write slower than the timeout does not split a series). Instances
  arriving after their series was scored are stored but the series is not scored again: each
  series has one row (``scan_directory`` resumes on the one scores CSV).
- Restart: series folders without ``.scored`` are scheduled again (complete after the timeout);
  the outbox is sent again. A crash between writing a series' results and appending its row
  scores that series again on restart and sends its results twice (new UIDs); nothing is lost.
- Forwarding retries after 1, 2, 4, ... 60 s; results stay in the outbox until the destination
  answers success (or a warning status), across restarts.
- SIGTERM (``stop``): stop accepting associations, let open ones finish, score the series
  already complete, try the outbox once more, exit. Series still inside their timeout stay
  stored for the next start.
- Logging: one line per association (peer, instances stored and refused, seconds) and one per
  scored series (score, flag, results, where they go), plus forwarding outcomes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Comprehensive3DSRStorage, ParametricMapStorage, Verification  # type: ignore[attr-defined]
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from isl_rt.dicom_results import Algorithm, DicomResultWriter
from isl_rt.errors import InputError, IslError
from isl_rt.outputs import log_text, safe_name, write_atomic
from isl_rt.pipeline import Scorer, SeriesDone, SeriesResult, check_resume_key, scan_directory

if TYPE_CHECKING:
    from isl_rt.bundle import Bundle

log = logging.getLogger(__name__)

#: C-STORE statuses (PS3.4 B.2.3 and PS3.7 C.4.2).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
#: Statuses after which a forwarded result counts as delivered (success and the warnings).
_DELIVERED = {0x0000, 0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}
#: Forwarding backoff: first and longest wait, seconds.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
SCORED_MARKER = ".scored"


@dataclass(frozen=True)
class Destination:
    """Where results are forwarded: ``HOST:PORT:AET``."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> "Destination":
        host, _, rest = text.rpartition(":")
        host, _, port = host.rpartition(":")
        ae_title = rest
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or not 0 < len(ae_title) <= 16:
            raise InputError(f"--forward takes HOST:PORT:AET (an AE title of 1-16 characters), got '{text}'.")
        return cls(host, int(port), ae_title)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class NodeConfig:
    store: Path
    out_csv: Path
    port: int = 11112
    ae_title: str = "ISLRT"
    bind: str = "0.0.0.0"
    series_timeout: float = 10.0
    forward: Destination | None = None
    max_associations: int = 16

    @property
    def incoming(self) -> Path:
        return self.store / "incoming"

    @property
    def results(self) -> Path:
        return self.store / "results"

    @property
    def outbox(self) -> Path:
        return self.store / "outbox"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(folder: Path) -> None:
    """mkdir -p whose new folders survive a crash (each parent fsynced after its child appears)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync_dir(new.parent)


def store_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (temporary file, fsync, rename) and fsync the folder, so the file
    is there after a crash once this returns."""
    _make_dirs(path.parent)
    write_atomic(path, data)
    _fsync_dir(path.parent)


class SeriesTracker:
    """When each series folder last received an instance; which ones have been idle long enough.

    A series with an instance still being stored (between :meth:`storing` and :meth:`arrived` or
    :meth:`abandoned`) is never idle: on a loaded machine writing one instance durably can take
    longer than the timeout, and the series must not be scored without it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._last: dict[Path, float] = {}
        self._storing: dict[Path, int] = {}
        self._lock = threading.Lock()

    def storing(self, folder: Path) -> None:
        """An instance of the series in ``folder`` is being written."""
        with self._lock:
            self._storing[folder] = self._storing.get(folder, 0) + 1

    def _stored(self, folder: Path) -> None:
        left = self._storing.get(folder, 0) - 1
        if left > 0:
            self._storing[folder] = left
        else:
            self._storing.pop(folder, None)

    def arrived(self, folder: Path) -> None:
        """An instance of the series in ``folder`` is stored (after :meth:`storing`, if it was called)."""
        with self._lock:
            self._stored(folder)
            self._last[folder] = time.monotonic()

    def abandoned(self, folder: Path) -> None:
        """The instance :meth:`storing` announced was not stored."""
        with self._lock:
            self._stored(folder)

    def due(self, *, everything: bool = False) -> list[Path]:
        """Series idle for ``timeout`` seconds with no instance being stored (all of them with
        ``everything``), forgotten here."""
        now = time.monotonic()
        with self._lock:
            ready = [f for f, t in self._last.items()
                     if everything or (now - t >= self.timeout and f not in self._storing)]
            for folder in ready:
                del self._last[folder]
        return sorted(ready, key=str)

    def pending(self) -> int:
        with self._lock:
            return len(self._last.keys() | self._storing.keys())


class _OutboxResults:
    """Writes a series' DICOM results, then links them into the outbox (when forwarding)."""

    def __init__(self, writer: DicomResultWriter, outbox: Path | None) -> None:
        self.writer = writer
        self.outbox = outbox

    def write(self, result: SeriesResult) -> list[Path]:
        written = self.writer.write(result)
        if self.outbox is not None:
            _make_dirs(self.outbox)
            for path in written:
                link = self.outbox / f"{safe_name(result.series_uid)}-{path.name}"
                link.unlink(missing_ok=True)
                os.link(path, link)
            _fsync_dir(self.outbox)
        return written


class Forwarder:
    """Sends the outbox to the destination by C-STORE, oldest first, with backoff on failure."""

    def __init__(self, outbox: Path, destination: Destination, ae_title: str) -> None:
        self.outbox = outbox
        self.destination = destination
        self.ae_title = ae_title
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="isl-forward", daemon=True)
        self.delay = 0.0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, *, last_try: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        if last_try and self.pending():
            self.send_once()

    def pending(self) -> list[Path]:
        if not self.outbox.is_dir():
            return []
        return sorted((p for p in self.outbox.iterdir() if p.suffix == ".dcm" and not p.name.startswith(".")),
                      key=lambda p: (p.stat().st_mtime, p.name))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if not self.pending():
                self._wake.wait(5.0)
                continue
            try:
                if self.send_once():
                    self.delay = 0.0
                    continue
            except Exception:  # a bug must not end forwarding: log it and retry later
                log.exception("forward: sending to %s failed", self.destination)
            self.delay = BACKOFF_FIRST_S if self.delay == 0 else min(BACKOFF_MAX_S, 2 * self.delay)
            log.warning("forward: retrying in %.0f s; %d results kept in %s", self.delay, len(self.pending()), self.outbox)
            self._stop.wait(self.delay)

    def send_once(self) -> bool:
        """One association sending everything in the outbox, oldest first; True when it is empty.
        What the destination refuses stays for the next try; the rest goes on."""
        files = self.pending()
        if not files:
            return True
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for sop_class in (Comprehensive3DSRStorage, ParametricMapStorage):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        dest = self.destination
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if not assoc.is_established:
            log.warning("forward: no association with %s (%s)", dest,
                        "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "unreachable")
            return False
        sent = 0
        try:
            for path in files:
                if not assoc.is_established:  # the destination aborted: the rest waits for the next try
                    break
                try:
                    status = assoc.send_c_store(path)
                except Exception as err:  # no accepted context for its SOP class, an unreadable file
                    log.warning("forward: %s not sent to %s (%s); kept", path.name, dest, err)
                    continue
                code = int(status.Status) if status and "Status" in status else None
                if code not in _DELIVERED:
                    log.warning("forward: %s refused %s (%s); kept", dest, path.name, "no answer" if code is None else f"status 0x{code:04X}")
                    continue
                path.unlink()
                sent += 1
        finally:
            if assoc.is_established:
                assoc.release()
            if sent:
                _fsync_dir(self.outbox)
                log.info("forward: %d results sent to %s", sent, dest)
        return not self.pending()


class Node:
    """The receiving server, the series tracker, one scoring worker and the forwarder."""

    def __init__(self, config: NodeConfig, bundle: "Bundle", scorer: Scorer, algorithm: Algorithm, *, backend_name: str) -> None:
        self.config = config
        self.bundle = bundle
        self.scorer = scorer
        self.backend_name = backend_name
        self.tracker = SeriesTracker(config.series_timeout)
        self.queue: queue.Queue[Path | None] = queue.Queue()
        self.results = _OutboxResults(DicomResultWriter(config.results, algorithm),
                                      config.outbox if config.forward else None)
        self.forwarder = Forwarder(config.outbox, config.forward, config.ae_title) if config.forward else None
        self._server: Any = None
        self._worker = threading.Thread(target=self._work, name="isl-score", daemon=True)
        self._associations: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.port = config.port

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Check the scores CSV, recover what a previous run left, start the worker, the forwarder
        and the server. Raises :class:`IslError` when the scores CSV belongs to another bundle or
        holds the scores of another folder than this store's."""
        cfg = self.config
        check_resume_key(cfg.out_csv, self.bundle, self.scorer.params.partition, cfg.incoming)
        limit_malloc_arenas()
        _make_dirs(cfg.incoming)
        self._worker.start()
        if self.forwarder is not None:
            self.forwarder.start()
            waiting = len(self.forwarder.pending())
            if waiting:
                log.info("outbox: %d results from an earlier run to send to %s", waiting, cfg.forward)
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = cfg.max_associations
        ae.maximum_pdu_size = 0  # no limit on what we receive
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_ACCEPTED, self._on_accepted),
                    (evt.EVT_RELEASED, self._on_closed), (evt.EVT_ABORTED, self._on_closed)]
        try:
            self._server = ae.start_server((cfg.bind, cfg.port), block=False, evt_handlers=handlers)
        except OSError as err:
            raise IslError(f"Cannot listen on {cfg.bind}:{cfg.port}: {err.strerror or err}; choose another --port or stop what uses it.") from None
        self.port = int(self._server.server_address[1])
        left = self._recover()  # after the server is up: their timeout runs while the node can receive
        log.info("listening on %s:%d as %s; store %s; scores %s; series complete after %g s%s%s",
                 cfg.bind, self.port, cfg.ae_title, cfg.store, cfg.out_csv, cfg.series_timeout,
                 f"; results forwarded to {cfg.forward}" if cfg.forward else "",
                 f"; {left} stored series from an earlier run to score" if left else "")

    def serve(self, stop: threading.Event) -> None:
        """Start, hand complete series to the worker until ``stop`` is set, then drain."""
        try:
            self.start()
            while not stop.wait(0.1):
                for folder in self.tracker.due():
                    self.queue.put(folder)
        finally:
            self.drain()

    def drain(self, association_wait_s: float = 30.0) -> None:
        """Stop accepting, let open associations finish (up to ``association_wait_s``), score the
        series already complete, try the outbox once more."""
        if self._server is not None:
            server, self._server = self._server, None
            open_ = server.active_associations
            server.shutdown()
            deadline = time.monotonic() + association_wait_s
            while any(a.is_alive() for a in open_) and time.monotonic() < deadline:
                time.sleep(0.05)
        for folder in self.tracker.due():
            self.queue.put(folder)
        self.queue.put(None)
        if self._worker.is_alive():
            self._worker.join()
        if self.forwarder is not None:
            self.forwarder.stop()
        waiting = self.tracker.pending()
        unsent = len(self.forwarder.pending()) if self.forwarder is not None else 0
        log.info("stopped%s%s", f"; {waiting} series still inside their timeout are stored for the next start" if waiting else "",
                 f"; {unsent} results stay in the outbox" if unsent else "")

    def _recover(self) -> int:
        """Schedule the stored series the scoring worker never finished; remove temporary files
        a crash left behind. Returns how many series were scheduled."""
        count = 0
        for study in sorted(self.config.incoming.iterdir()):
            if not study.is_dir():
                continue
            for series in sorted(study.iterdir()):
                if not series.is_dir():
                    continue
                for tmp in series.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                if not (series / SCORED_MARKER).exists():
                    self.tracker.arrived(series)
                    count += 1
        return count

    # ---- network side (association threads) ----------------------------------------------------
    def _on_accepted(self, event: Any) -> None:
        with self._lock:
            self._associations[id(event.assoc)] = {"start": time.monotonic(), "stored": 0, "refused": 0, "series": set()}

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            study, series, sop = (str(ds.get(k, "") or "") for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
        except Exception as err:  # pydicom raises many types on undecodable data sets
            log.warning("C-STORE from %s: data set cannot be decoded (%s); refused", _peer(event.assoc), log_text(err))
            return self._count(event, CANNOT_UNDERSTAND)
        if not (study and series and sop):
            log.warning("C-STORE from %s: no Study/Series/SOP Instance UID; refused", _peer(event.assoc))
            return self._count(event, DATASET_DOES_NOT_MATCH)
        folder = self.config.incoming / safe_name(study) / safe_name(series)
        self.tracker.storing(folder)  # a slow durable write must not make the series look complete
        try:
            store_durably(folder / f"{safe_name(sop)}.dcm", event.encoded_dataset())
        except OSError as err:
            self.tracker.abandoned(folder)
            log.error("C-STORE from %s: cannot store %s (%s); refused", _peer(event.assoc), log_text(sop), log_text(err))
            return self._count(event, OUT_OF_RESOURCES)
        except BaseException:
            self.tracker.abandoned(folder)
            raise
        self.tracker.arrived(folder)
        return self._count(event, SUCCESS, series)

    def _count(self, event: Any, status: int, series: str | None = None) -> int:
        with self._lock:
            stats = self._associations.get(id(event.assoc))
            if stats is not None:
                stats["stored" if status == SUCCESS else "refused"] += 1
                if series:
                    stats["series"].add(series)
        return status

    def _on_closed(self, event: Any) -> None:
        with self._lock:
            stats = self._associations.pop(id(event.assoc), None)
        if stats is None:
            return
        how = "released" if event.event is evt.EVT_RELEASED else "aborted"
        log.info("association %s %s: %d instances stored, %d refused, %d series, %.1f s", _peer(event.assoc), how,
                 stats["stored"], stats["refused"], len(stats["series"]), time.monotonic() - stats["start"])

    # ---- scoring worker ------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            folder = self.queue.get()
            if folder is None:
                return
            try:
                self._score(folder)
            except Exception:  # a bug must not stop the node: log it, the series stays unscored
                log.exception("series folder %s: scoring failed", folder)
            release_freed_memory()

    def _score(self, folder: Path) -> None:
        cfg = self.config
        rows: list[dict[str, Any]] = []

        def on_series(event: SeriesDone) -> None:
            rows.append(event.row)

        # one series folder at a time into one CSV: the run key names the store's incoming folder
        summary = scan_directory(folder, cfg.out_csv, self.bundle, self.scorer, backend_name=self.backend_name,
                                 results=self.results, on_series=on_series, run_root=cfg.incoming)
        write_atomic(folder / SCORED_MARKER, b"")
        for row in rows:
            log.info("series %s", _describe(row, cfg))
        if summary.resumed and not rows:
            log.info("series folder %s: already scored; the instances that arrived since are stored, not scored again", folder.name)
        if self.forwarder is not None:
            self.forwarder.wake()


#: the C library this process runs on (its own symbols); glibc's malloc_trim and mallopt, None elsewhere
try:
    _LIBC: Any = ctypes.CDLL(None)
except (OSError, TypeError):  # no process-wide symbol table to open (Windows)
    _LIBC = None
_MALLOC_TRIM = getattr(_LIBC, "malloc_trim", None)
_MALLOPT = getattr(_LIBC, "mallopt", None)
#: glibc's mallopt parameter for the number of malloc arenas (malloc.h)
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Let glibc's malloc keep at most ``arenas`` arenas (elsewhere nothing). By default each
    thread that allocates may get its own, up to 8 per core, and every association thread
    decodes instances of about 0.5 MiB."""
    if _MALLOPT is not None:
        _MALLOPT(_M_ARENA_MAX, arenas)


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system after each series (glibc's malloc_trim;
    elsewhere nothing). With :func:`limit_malloc_arenas` it lowered the node's RSS after ten
    studies from about 610 to 510 MiB (benchmarks/RESULTS.md, "The DICOM node")."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _peer(assoc: Any) -> str:
    requestor = assoc.requestor
    return log_text(f"{requestor.ae_title}@{requestor.address}:{requestor.port}")  # the AE title is the sender's


def _describe(row: dict[str, Any], cfg: NodeConfig) -> str:
    """One log line for one scores row."""
    uid = row.get("SeriesInstanceUID") or row.get("path")
    if row.get("status") != "ok":
        return f"{log_text(uid)}: {row.get('status')}: {log_text(row.get('error'))}"
    flag = {True: "flagged", False: "not flagged"}.get(row.get("flagged"), "no threshold")  # type: ignore[arg-type]
    where = f"forwarding to {cfg.forward}" if cfg.forward else f"in {cfg.results / safe_name(str(uid))}"
    return (f"{log_text(uid)}: scan score {row['scan_score']:.4g} ({flag}), {row['n_slices']} slices, {row['seconds']:.1f} s; "
            f"SR + parametric map {where}")
