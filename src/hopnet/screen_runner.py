"""Screen many structures (:class:`hopnet.database.Entry`) in this process, in a pool of worker
processes, or as Ray tasks on a cluster. :func:`run` yields lists of :class:`Outcome` as
structures finish; the caller writes them (one writer, so no two processes touch an output).

* **Ions.** ``Job.ion`` is one ion (screened in every structure, as :func:`hopnet.screening.screen`
  does), a comma list (``"Li,Na"``) or ``"auto"`` (:data:`hopnet.screening.MOBILE_IONS`): each
  listed ion present in a structure is screened; a structure with none is *skipped* with its
  reason (not a failure).
* **Failures.** A structure that cannot be read, has no hop, or runs past ``Job.timeout`` seconds
  (per ion) is an outcome with its cause (the error's class, ``timeout`` or ``worker died``) and
  message; nothing is raised. Ctrl-C (KeyboardInterrupt) goes through.
* **Workers** (``workers > 1``): processes of the ``spawn`` context (torch and fork do not mix),
  one torch thread each, the model loaded once per process. At most ``2 x workers`` structures
  are in flight. A worker that dies (segfault, out of memory, ``os._exit``) breaks the pool: a new
  pool is started and the structures that were in flight are run again one at a time, so the
  one that kills its worker is known; it is retried ``max_retries`` times, then recorded as
  ``worker died``.
* **Ray** (``ray="auto"``, an address, or ``"local"``: a Ray instance on this machine with
  ``workers`` CPUs; an already initialised Ray is used as it is): one task per structure, or
  per ``batch`` structures (1 CPU), the model cached per worker process, ``max_retries`` automatic retries of a task whose
  worker died; results are collected with ``ray.wait`` as they finish. Files are shipped to the
  tasks as bytes (:meth:`~hopnet.database.Entry.portable`), so workers need no shared disk;
  hopnet itself must be installed on every node.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

from hopnet.database import Entry
from hopnet.infra.errors import HopnetError

__all__ = ["Job", "Outcome", "parse_ions", "screen_entry", "run", "import_ray", "RAY_HINT"]

RAY_HINT = "pip install 'hopnet[ray]' (or: pip install 'ray>=2.9')"


@dataclass(frozen=True)
class Job:
    """What to do with every structure: ``ion`` (see the module docstring), ``options`` (keyword
    arguments of :func:`hopnet.screening.screen`: max_hop, symprec, model, threshold, ...),
    ``timeout`` (seconds per screen, 0: none) and ``keep_network`` (keep each result's structure
    and hop graph, for plots; dropped otherwise, so results travel light)."""

    ion: str = "auto"
    options: dict = field(default_factory=dict)
    timeout: float = 0.0
    keep_network: bool = False


@dataclass
class Outcome:
    """One structure's results (one :class:`~hopnet.screening.ScreenResult` per ion), failures
    ((ion, cause, message); ion '' when the structure could not be read), or the reason it was
    skipped; how long it took (s), on which worker (``host:pid``) and that worker's peak resident
    memory so far (MB)."""

    id: str
    formula: str = ""
    n_atoms: int = 0
    results: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0
    worker: str = ""
    peak_rss_mb: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def parse_ions(spec: str) -> tuple[bool, tuple[str, ...]]:
    """(fixed, ions) of an ion spec: ``"Li"`` -> (True, ("Li",)); ``"Li,Na"`` or ``"auto"`` ->
    (False, the ions screened where present). An unknown symbol is a HopnetError."""
    from pymatgen.core import Element

    from hopnet.screening import MOBILE_IONS

    text = str(spec or "").strip()
    if text.lower() == "auto":
        return False, tuple(MOBILE_IONS)
    ions = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in ions if not Element.is_valid_symbol(x)]
    if not ions or bad:
        raise HopnetError(f"--ion must be an element symbol, a comma list of them, or 'auto'; got {spec!r}")
    return len(ions) == 1 and "," not in text, tuple(dict.fromkeys(ions))


# --------------------------------------------------------------------------- one structure
class _Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def _screen_timed(obj: Any, ion: str, job: Job, source: str) -> Any:
    """:func:`hopnet.screening.screen` within ``job.timeout`` seconds (SIGALRM, main thread only)."""
    from hopnet import screening

    timeout = float(job.timeout)
    use_alarm = timeout > 0 and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return screening.screen(obj, ion, source=source, **job.options)
    except _Timeout:
        raise HopnetError(f"timed out after {timeout:g} s (--timeout); skipped") from None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, HopnetError) and str(exc).startswith("timed out after"):
        return "timeout"
    return type(exc).__name__


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, HopnetError) else f"{type(exc).__name__}: {text}"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def screen_entry(entry: Entry, job: Job) -> Outcome:
    """Screen one entry for the job's ion(s); every error becomes part of the outcome."""
    from hopnet.structures import to_structure

    t0 = time.perf_counter()
    out = Outcome(entry.id)
    fixed, ions = parse_ions(job.ion)
    try:
        obj = entry.load()
        if not fixed:
            obj = to_structure(obj)
            out.formula, out.n_atoms = obj.composition.reduced_formula, len(obj)
            present = set(el.symbol for el in obj.composition.elements)
            ions = tuple(x for x in ions if x in present)
            if not ions:
                out.skipped = f"no mobile ion ({', '.join(parse_ions(job.ion)[1])}) in {out.formula}"
        for ion in ions:
            try:
                r = _screen_timed(obj, ion, job, entry.id)
            except Exception as exc:  # noqa: BLE001 - one structure's failure is a row, not the end of the run
                out.failures.append((ion, _cause(exc), _message(exc)))
                continue
            out.formula, out.n_atoms = r.formula, r.n_atoms
            out.results.append(r if job.keep_network else replace(r, structure=None, network=None))
    except Exception as exc:  # noqa: BLE001 - unreadable structure
        out.failures.append((ions[0] if fixed else "", _cause(exc), _message(exc)))
    out.seconds = time.perf_counter() - t0
    out.worker = f"{socket.gethostname()}:{os.getpid()}"
    out.peak_rss_mb = _peak_rss_mb()
    return out


# --------------------------------------------------------------------------- workers
_READY: dict[str, bool] = {}


def _init_worker(job: Job, ignore_sigint: bool = True) -> None:
    """A worker process: one torch thread, Ctrl-C left to the parent, the model loaded once."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    model = job.options.get("model", "default")
    if isinstance(model, (str, os.PathLike)):
        from hopnet.inference import get_model

        try:
            get_model(model)  # cached for the life of the process
        except HopnetError:
            pass  # each structure reports it
    _READY["worker"] = True


def _worker_failure(entry: Entry, message: str, cause: str = "worker died") -> Outcome:
    return Outcome(entry.id, failures=[("", cause, message)])


def _pool_batches(entries: Iterable[Entry], job: Job, workers: int, max_retries: int) -> Iterator[list[Outcome]]:
    """Outcomes from a pool of ``workers`` spawned processes (see the module docstring)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    queue, suspects, crashes = deque(entries), deque(), {}
    while queue or suspects:
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(job,))
        running: dict[Any, Entry] = {}
        isolated, broken = False, []
        try:
            while (queue or suspects or running) and not broken:
                if suspects and not running:
                    isolated = True
                    e = suspects.popleft()
                    running[pool.submit(screen_entry, e, job)] = e
                elif not suspects:
                    isolated = False
                    while queue and len(running) < 2 * workers:
                        e = queue.popleft()
                        running[pool.submit(screen_entry, e, job)] = e
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    wait(list(running))  # the others fail as well, or finished just before
                    done = set(running)
                batch = []
                for f in done:
                    e = running.pop(f)
                    exc = f.exception()
                    if exc is None:
                        batch.append(f.result())
                    elif isinstance(exc, BrokenProcessPool):
                        broken.append(e)
                    else:
                        batch.append(_worker_failure(e, _message(exc), cause="worker error"))
                if batch:
                    yield batch
        finally:
            _stop_pool(pool, graceful=not (queue or suspects or running or broken))
        for e in broken:
            if not isolated:
                suspects.append(e)  # not known which of them killed the worker: each again, alone
                continue
            crashes[e.id] = crashes.get(e.id, 0) + 1
            if crashes[e.id] > max_retries:
                yield [_worker_failure(e, f"the worker process died screening it ({crashes[e.id]} times)")]
            else:
                suspects.appendleft(e)


def _stop_pool(pool: Any, graceful: bool) -> None:
    """Shut the pool down; on an early exit (Ctrl-C, a broken pool) its processes are ended."""
    if graceful:
        pool.shutdown(wait=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()


# --------------------------------------------------------------------------- Ray
def import_ray() -> Any:
    """The ``ray`` module, or one HopnetError line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise HopnetError(f"--ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def _ray_screen(entries: list[Entry], job: Job) -> list[Outcome]:
    """The Ray task: set the worker up once per process, then screen the entries."""
    if not _READY.get("worker"):
        _init_worker(job, ignore_sigint=False)
    return [screen_entry(e, job) for e in entries]


def _chunks(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    for e in entries:
        chunk.append(e)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ray_batches(entries: Iterable[Entry], job: Job, address: str, workers: int,
                 max_retries: int, batch: int) -> Iterator[list[Outcome]]:
    """Outcomes of Ray tasks of ``batch`` structures, collected as they finish (see the module
    docstring). A task of several structures whose retries are used up is split into tasks of
    one, so only the structure that kills its worker is recorded as ``worker died``."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        local = address == "local"
        ray.init(address=None if local else address, num_cpus=workers if local else None,
                 include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_ray_screen)
        cap = max(4, 2 * int(ray.cluster_resources().get("CPU", 1)))
        todo, again, pending = _chunks(entries, batch), deque(), {}
        while True:
            while len(pending) < cap:
                chunk = again.popleft() if again else next(todo, None)
                if chunk is None:
                    break
                pending[task.remote([e.portable() for e in chunk], job)] = chunk
            if not pending:
                return
            ready, rest = ray.wait(list(pending), num_returns=1)
            if rest:
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            out: list[Outcome] = []
            for ref in ready:
                chunk = pending.pop(ref)
                try:
                    out += ray.get(ref)
                except ray.exceptions.RayError as exc:  # retries used up: the worker kept dying
                    if len(chunk) > 1:
                        again.extend([e] for e in chunk)
                    else:
                        out.append(_worker_failure(chunk[0], _message(exc)))
            if out:
                yield out
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------- entry point
def run(entries: Iterable[Entry], job: Job, workers: int = 1, ray: str | None = None,
        max_retries: int = 2, batch: int = 1) -> Iterator[list[Outcome]]:
    """Screen ``entries``: lists of outcomes as they finish (each structure exactly once). In
    this process for ``workers == 1``, else in ``workers`` processes; on Ray when ``ray`` is an
    address, ``"auto"`` or ``"local"``, ``batch`` structures per task."""
    if not (isinstance(workers, int) and workers >= 1):
        raise HopnetError(f"workers must be a positive number of processes, got {workers!r}")
    if not (isinstance(batch, int) and batch >= 1):
        raise HopnetError(f"batch must be a positive number of structures, got {batch!r}")
    if not (isinstance(max_retries, int) and max_retries >= 0):
        raise HopnetError(f"max_retries must be a number >= 0, got {max_retries!r}")
    if ray is not None:
        yield from _ray_batches(entries, job, ray, workers, max_retries, batch)
    elif workers > 1:
        yield from _pool_batches(entries, job, workers, max_retries)
    else:
        for e in entries:
            yield [screen_entry(e, job)]
