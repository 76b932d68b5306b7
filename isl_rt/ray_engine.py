"""Archive scale: score a folder tree's series in a pool of Ray actors (``isl-rt scan --engine ray``).

Each actor (:class:`SeriesActor`) loads the bundle once, holds one activated backend pair and one
:class:`~isl_rt.pipeline.Scorer`, and turns a series (headers only, as discovery found it) into
its outcome: the scores row, the slice rows and the per-series JSON document
(:func:`isl_rt.pipeline.score_item`, the local scan's code). The driver writes every outcome
through :func:`isl_rt.pipeline.scan_series`, the local scan's writer: the same scores CSV,
``<stem>.slices.csv`` and per-series JSON, the same run key, resume rules and set-aside rows.

Exactly once: only the driver writes rows, each as one durable append, and it skips a series its
CSV already holds. An actor that dies is restarted by Ray and the series it held are tried again
(``max_restarts``, ``max_task_retries``); a series whose actor dies on every try becomes an error
row and the run goes on. A driver killed and restarted resumes from its CSV like a local scan.

Every node must see the DICOM tree, the bundle and the ``--heatmaps`` / ``--dicom-out`` folders at
the same paths (a shared file system): actors read the series and write those files themselves.
Ray is imported only here, and only when a pool starts; without it the pool refuses in one sentence.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from isl_rt.errors import IslError
from isl_rt.pipeline import (
    ResultWriter,
    ScanSummary,
    Scorer,
    SeriesDone,
    SeriesOutcome,
    failed_outcome,
    load_item,
    params_from_bundle,
    scan_series,
    score_item,
    with_stride,
)

if TYPE_CHECKING:
    from isl_rt.bundle import Bundle
    from isl_rt.io.series import SeriesItem

#: tries per series (the first and Ray's retries) before a series whose actor keeps dying becomes an error row
TRIES = 3
#: series queued on each actor, so it starts the next as soon as one is done
IN_FLIGHT = 2

MISSING_RAY = "--engine ray needs Ray, which is not installed: pip install 'isl-rt[ray]' (or use --engine local)."


@dataclass(frozen=True)
class ActorSpec:
    """What every actor builds (sent to each actor, so everything here is picklable)."""

    bundle_root: Path
    backend: str
    #: CPU threads of each actor's backends; Ray reserves as many CPUs per actor
    threads: int
    precision: str
    stride: int
    batch_size: int
    heatmaps: Path | None
    results: ResultWriter | None
    top_slices: int
    #: the driver's working folder: actors work there too, so relative paths (DIR, --heatmaps,
    #: --dicom-out) mean on every node what they mean to the driver
    cwd: Path


@dataclass(frozen=True)
class RayOptions:
    """Where the pool runs and how large it is."""

    #: "local" starts a Ray instance on this machine; "auto" or HOST:PORT joins a running cluster
    address: str
    #: actors in the pool; 0 = as many as the cluster's CPUs (or GPUs, with ``gpus_per_actor``) hold
    actors: int
    #: GPUs reserved per actor (a fraction shares one GPU between actors); 0 = CPU actors
    gpus_per_actor: float


@dataclass(frozen=True)
class ActorInfo:
    """What an actor says about itself once it has started (``error``: why it could not)."""

    backend_name: str
    description: str
    manifest_sha256: str
    pid: int
    error: str = ""


class SeriesActor:
    """One worker of the pool: the bundle, an activated backend pair and a scorer, built once."""

    def __init__(self, spec: ActorSpec) -> None:
        from isl_rt.backends import open_backends
        from isl_rt.bundle import load_bundle

        self.spec = spec
        self.error = ""
        try:
            os.chdir(spec.cwd)
        except OSError as err:
            self.error = (f"A Ray actor cannot work in {spec.cwd} ({err.strerror}): every node must see the driver's "
                          "folders at the same paths.")
            return
        try:
            from isl_rt import extensions

            extensions.native().set_num_threads(spec.threads)  # the kernels' OpenMP threads: this actor's CPUs, not the node's
            self.bundle = load_bundle(spec.bundle_root)
            self.pair = open_backends(self.bundle, spec.backend, threads=spec.threads, precision=spec.precision)
            self.pair.__enter__()
            params = with_stride(params_from_bundle(self.bundle), spec.stride)
            self.scorer = Scorer(params, self.pair.dedn, self.pair.drn, dedn_batch=spec.batch_size)
        except IslError as err:
            self.error = str(err)

    def describe(self) -> ActorInfo:
        if self.error:
            return ActorInfo("", "", "", os.getpid(), self.error)
        from isl_rt.bundle import sha256_file

        manifest_sha256 = sha256_file(self.bundle.root / "manifest.json")  # as the run key has it (pipeline.run_key)
        return ActorInfo(self.pair.name, self.pair.description, manifest_sha256, os.getpid())

    def score(self, item: "SeriesItem") -> SeriesOutcome:
        if self.error:
            raise IslError(self.error)
        s = self.spec
        return score_item(item, load_item(item), self.bundle, self.scorer, backend_name=self.pair.name,
                          heatmaps=s.heatmaps, results=s.results, top_slices=s.top_slices)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise IslError(MISSING_RAY) from None
    return ray


class RayPool:
    """A pool of :class:`SeriesActor` on a Ray cluster; a context manager that connects (or starts a
    local instance), starts the actors and waits for the first to say what it runs; on exit it
    ends the actors and the instance it started. A Ray session already open in this process is
    used as it is (and left open)."""

    def __init__(self, spec: ActorSpec, options: RayOptions) -> None:
        self.spec = spec
        self.options = options
        self.ray = _import_ray()
        self.actors: list[Any] = []
        self.info: ActorInfo | None = None
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "RayPool":
        ray = self.ray
        if not ray.is_initialized():
            self._connect()
        try:
            self._start_actors()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._started:
            self.ray.shutdown()
            self._started = False

    def _connect(self) -> None:
        ray = self.ray
        address = self.options.address
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
            else:
                ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = "a local Ray instance could not start" if address == "local" else f"no Ray cluster answered at {address}"
            raise IslError(f"--engine ray: {where} ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                           "check `ray status` or drop --address.") from None
        self._started = True

    def _start_actors(self) -> None:
        ray = self.ray
        count = self._actor_count(ray.cluster_resources())
        remote = ray.remote(SeriesActor).options(
            num_cpus=self.spec.threads, num_gpus=self.options.gpus_per_actor,
            max_restarts=-1, max_task_retries=TRIES - 1,
        )
        self.actors = [remote.remote(self.spec) for _ in range(count)]
        infos = ray.get([actor.describe.remote() for actor in self.actors])
        for info in infos:
            if info.error:
                raise IslError(info.error)
        if len({info.manifest_sha256 for info in infos}) > 1:
            raise IslError(f"The Ray actors loaded different bundles at {self.spec.bundle_root}: every node must see the same "
                           "bundle at that path.")
        self.info = infos[0]
        self.pids = [info.pid for info in infos]

    def _actor_count(self, resources: dict[str, float]) -> int:
        """``--actors``, checked against what the cluster holds, or as many as fit."""
        cpus = float(resources.get("CPU", 0.0))
        gpus = float(resources.get("GPU", 0.0))
        per_gpu = self.options.gpus_per_actor
        fit = int(cpus // self.spec.threads)
        if per_gpu > 0:
            fit = min(fit, int(math.floor(gpus / per_gpu + 1e-9)))
        if fit < 1:
            need = f"{self.spec.threads} CPU(s)" + (f" and {per_gpu:g} GPU" if per_gpu > 0 else "")
            raise IslError(f"The Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs) cannot hold one actor of {need}: "
                           "lower --threads or --gpus-per-actor, or add nodes.")
        if self.options.actors > fit:
            raise IslError(f"--actors {self.options.actors} does not fit the Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs): "
                           f"at most {fit} actors of {self.spec.threads} thread(s)"
                           + (f" and {per_gpu:g} GPU" if per_gpu > 0 else "") + " each.")
        return self.options.actors or fit

    # ---- scanning --------------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        assert self.info is not None
        return self.info.backend_name

    @property
    def description(self) -> str:
        assert self.info is not None
        gpus = f", {self.options.gpus_per_actor:g} GPU" if self.options.gpus_per_actor > 0 else ""
        return f"{self.info.description}; Ray: {len(self.actors)} actors of {self.spec.threads} CPU(s){gpus}"

    def scan(self, root: Path, out_csv: Path, bundle: "Bundle", *, resume: bool = True,
             on_series: Callable[[SeriesDone], None] | None = None) -> ScanSummary:
        """:func:`isl_rt.pipeline.scan_directory` with the series scored by the pool's actors."""
        params = with_stride(params_from_bundle(bundle), self.spec.stride)
        return scan_series(root, out_csv, bundle, params, self.score_all, backend_name=self.backend_name,
                           resume=resume, on_series=on_series)

    def score_all(self, todo: Sequence["SeriesItem"]) -> Iterator[SeriesOutcome]:
        """One outcome per series of ``todo``, in the order they finish; at most :data:`IN_FLIGHT`
        series queued per actor, the next sent to the actor that finished one."""
        ray = self.ray
        queue = deque(todo)
        running: dict[Any, tuple[int, "SeriesItem"]] = {}

        def send(index: int) -> None:
            item = queue.popleft()
            running[self.actors[index].score.remote(item)] = (index, item)

        for _ in range(IN_FLIGHT):
            for index in range(len(self.actors)):
                if queue:
                    send(index)
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                index, item = running.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayActorError as err:
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    outcome = failed_outcome(item, f"the Ray actor scoring this series died on each of {TRIES} tries ({first})")
                if queue:
                    send(index)
                yield outcome
        finally:
            for ref in running:  # the driver stopped early: series still queued on an actor are not started
                ray.cancel(ref)
