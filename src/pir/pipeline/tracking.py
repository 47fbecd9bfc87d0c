"""MLflow tracking for the pipeline stages: one SQLite store at the repository root.

Every stage run is an MLflow run named ``<DVC experiment> · <stage>`` (``main@842cfa3 · train``
outside an experiment), tagged ``dvc_exp_name``, ``dvc_stage`` and ``git_commit``, with the
params people compare first as short top-level keys (docs/design.md, "DVC and MLflow").
evaluate/analyze reopen the train stage's run, found by the model key the checkpoint carries
(tag ``pir_model_key``), so one row in ``mlflow ui`` holds a whole model.

MLflow is a side channel: a locked or broken store must never cost the stage its
files. Every call goes through ``_retry``; after the last attempt it warns in one
line and the stage carries on (the tracker then turns into a no-op).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from pir import processes
from pir.errors import first_line
from pir.hub import Resolved
from pir.pipeline.reports import flatten

EXPERIMENT = "pir"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"   # opens the runs table, not MLflow 3's GenAI view
RETRIES = 3
RETRY_DELAY_S = 0.5                             # doubled after each failed attempt
SYSTEM_METRICS_INTERVAL_S = 10.0
MAX_PARAM_VALUE = 6000                          # MLflow's param value limit
MAX_KEY = 250
PARAMS_PER_BATCH = 100                          # MLflow's log_batch limit on params
NAME_SEPARATOR = " · "                          # <experiment> · <stage>
NO_GIT_LABEL = "workspace"                      # run label outside git and outside a DVC experiment

# A saved view of the runs table (the UI's "Share" feature reads it from an experiment tag): the
# columns people compare first, best test mR on top. README "Compare" links to it.
COMPARE_VIEW_KEY = "pir-compare"
SHARED_VIEW_TAG = "mlflow.sharedViewState."
COMPARED_COLUMNS = ("recipe", "preset", "dataset", "use_vir", "use_lca", "use_affiliation", "epochs",
                    "global_batch", "lr", "seed", "precision")
COMPARED_METRIC = "test_r_mean"


def tracking_uri(root: str | os.PathLike) -> str:
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def artifact_location(root: str | os.PathLike) -> str:
    # Absolute: runs from a queued experiment's temp clone land in the real repo (docs/design.md, "DVC and MLflow").
    return (Path(root).resolve() / "mlartifacts").as_uri()


def _warn(message: str) -> None:
    print(f"warning: MLflow: {message}", file=sys.stderr)


def _retry(what: str, call: Callable[[], Any]) -> tuple[bool, Any]:
    """Run ``call`` up to RETRIES times with exponential back-off; (ok, result), warning on give-up."""
    delay = RETRY_DELAY_S
    for attempt in range(1, RETRIES + 1):
        try:
            return True, call()
        except Exception as exc:  # sqlite locked, disk full, bad path: all equally non-fatal here
            if attempt == RETRIES:
                _warn(f"{what} failed after {RETRIES} attempts ({first_line(exc, 200)}); continuing without it")
                return False, None
            time.sleep(delay)
            delay *= 2
    return False, None


def _fast_sqlite(dbapi_connection, _record) -> None:
    # The schema of a file nobody uses yet: no sync per commit, journal in memory (docs/design.md, "DVC and MLflow").
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.execute("PRAGMA journal_mode = MEMORY")
    cursor.close()


def _fsync(path: Path, flags: int = 0) -> None:
    # os only: this module stays free of torch (pir.files has the same for the rest of the library)
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_store(path: Path, artifacts: str) -> None:
    """A new store's schema, built in a temp file beside ``path`` and linked into place whole.

    MLflow migrates a new SQLite store through some fifty schema steps, each a commit that waits for the
    disk (7 s here on the first use of every project). Built unsynced in a private file, then fsynced
    once and linked in, it takes a second, and a crash leaves no half-built store: the link either
    happens after the fsync or not at all, and never replaces a store another process made meanwhile.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    temp = path.with_name(f".{path.name}.{os.getpid()}.creating")
    temp.unlink(missing_ok=True)
    event.listen(Engine, "connect", _fast_sqlite)
    try:
        SqlAlchemyStore(f"sqlite:///{temp}", artifacts).engine.dispose()
    finally:
        event.remove(Engine, "connect", _fast_sqlite)
    try:
        _fsync(temp)
        if path.exists() and path.stat().st_size == 0:   # an empty file an older probe left: not a store
            path.unlink(missing_ok=True)
        os.link(temp, path)
        _fsync(path.parent, os.O_DIRECTORY)
    except FileExistsError:
        pass                                               # another process's store won: use it
    finally:
        temp.unlink(missing_ok=True)


def _probe_store(root: str | os.PathLike) -> None:
    """Fail fast on an unusable database file: MLflow itself retries engine creation for minutes."""
    import sqlite3
    path = Path(root).resolve() / "mlflow.db"
    if not path.exists() or path.stat().st_size == 0:
        _create_store(path, artifact_location(root))
    connection = sqlite3.connect(str(path), timeout=5)
    try:
        connection.execute("pragma schema_version").fetchone()
    finally:
        connection.close()


def _client(root: str | os.PathLike):
    from mlflow.tracking import MlflowClient
    _probe_store(root)
    return MlflowClient(tracking_uri=tracking_uri(root))


def compare_view() -> dict[str, Any]:
    """The runs-table state of the saved view: MLflow column ids are ``<type>.`<key>```."""
    metric = f"metrics.`{COMPARED_METRIC}`"
    columns = [metric, *(f"params.`{key}`" for key in COMPARED_COLUMNS)]
    # columnOrder: test mR beside the run name, then the params in this order (not alphabetically)
    return {"selectedColumns": columns, "columnOrder": columns, "orderByKey": metric, "orderByAsc": False}


def compare_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """Where the saved comparison view opens in ``mlflow ui``."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={COMPARE_VIEW_KEY}"


def _experiment_tags() -> dict[str, str]:
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
            SHARED_VIEW_TAG + COMPARE_VIEW_KEY: json.dumps(compare_view(), separators=(",", ":"))}


def ensure_experiment(root: str | os.PathLike, name: str = EXPERIMENT) -> str | None:
    """Create the SQLite store and the experiment if needed; its id, or None when MLflow is unusable.

    Call before parallel workers start: concurrent first use of a fresh SQLite store races
    on its schema migration.
    """
    def create() -> str:
        client = _client(root)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(name, artifact_location=artifact_location(root),
                                                         tags=_experiment_tags())
            except Exception:
                # Another process created it between our lookup and create: use theirs.
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
            for key, value in _experiment_tags().items():   # stores made by older versions get them too
                if experiment.tags.get(key) != value:
                    client.set_experiment_tag(experiment_id, key, value)
        return experiment_id

    return _retry(f"opening experiment {name!r} in {tracking_uri(root)}", create)[1]


def _git(root: str | os.PathLike, *args: str) -> str | None:
    """``git -C root <args>``'s output, or None outside a git checkout (or without git)."""
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def git_commit(root: str | os.PathLike) -> str:
    """The commit the run was made from: DVC's experiment baseline when set, else HEAD of ``root``."""
    rev = os.environ.get("DVC_EXP_BASELINE_REV", "").strip()
    return rev or _git(root, "rev-parse", "HEAD") or "unknown"


def run_label(root: str | os.PathLike) -> str:
    """What a run belongs to: the DVC experiment's name (``dvc exp run``, queued or not; DVC names
    unnamed ones itself), else ``<branch>@<short commit>`` of ``root`` (the commit alone on a
    detached HEAD), else ``workspace`` outside git."""
    experiment = os.environ.get("DVC_EXP_NAME", "").strip()
    if experiment:
        return experiment
    commit = _git(root, "rev-parse", "--short", "HEAD")
    if commit is None:
        return NO_GIT_LABEL
    branch = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    return f"{branch}@{commit}" if branch else commit


def _taken_names(root: Path, experiment_id: str, name: str) -> set[str]:
    """Run names in the experiment that start like ``name`` (LIKE narrows; exact matching is ours)."""
    prefix = re.split(r"['\"\\]", name, maxsplit=1)[0]   # quotes end the pattern; % and _ only widen it
    ok, runs = _retry("searching run names", lambda: _client(root).search_runs(
        [experiment_id], filter_string=f"attributes.run_name LIKE '{prefix}%'", max_results=50000))
    return {r.info.run_name for r in runs} if ok else set()


def run_name_for(stage: str, root: str | os.PathLike, label: str | None = None) -> str:
    """A name for a new run of ``stage``: ``<label> · <stage>``, ``label`` defaulting to run_label(root),
    with `` (2)``, `` (3)``, ... when the experiment already has a run of that name."""
    name = f"{label or run_label(root)}{NAME_SEPARATOR}{stage}"
    experiment_id = ensure_experiment(root)
    taken = _taken_names(Path(root).resolve(), experiment_id, name) if experiment_id else set()
    if name not in taken:
        return name
    return next(f"{name} ({n})" for n in itertools.count(2) if f"{name} ({n})" not in taken)


def hub_tags(found: Mapping[str, Resolved]) -> dict[str, str]:
    """Tags ``hub.<setting>.id`` and ``hub.<setting>.commit`` of the weights a stage resolved from Hub ids
    (pir.hub.recording; MLflow keys allow neither ':' nor '@', so the id is a value)."""
    tags: dict[str, str] = {}
    for what, resolved in found.items():
        key = re.sub(r"[^\w./ -]", "_", what)
        tags.update({f"hub.{key}.id": resolved.id, f"hub.{key}.commit": resolved.commit})
    return tags


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params -> {"train.lr": "0.0005", ...}, values and keys cut to MLflow's limits."""
    return {name[:MAX_KEY]: str(value)[:MAX_PARAM_VALUE] for name, value in flatten(params, prefix).items()}


class Tracker:
    """One MLflow run. Every method is best-effort: failures warn once per call and are swallowed."""

    def __init__(self, root: str | os.PathLike, run_id: str | None):
        self.root = Path(root)
        self.run_id = run_id
        self._monitor = None

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.active or not metrics:
            return
        from mlflow.entities import Metric
        stamp = int(time.time() * 1000)
        batch = [Metric(k[:MAX_KEY], float(v), stamp, int(step or 0)) for k, v in metrics.items()]
        _retry("logging metrics", lambda: _client(self.root).log_batch(self.run_id, metrics=batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (flattened) params; keys the run already holds are skipped (MLflow params are immutable)."""
        if not self.active:
            return
        from mlflow.entities import Param
        ok, run = _retry("reading run params", lambda: _client(self.root).get_run(self.run_id))
        existing = run.data.params if ok else {}
        fresh = [Param(k, v) for k, v in flatten_params(params).items() if k not in existing]
        changed = sorted(k for k, v in flatten_params(params).items() if k in existing and existing[k] != v)
        if changed:
            _warn(f"run {self.run_id} already has different values for {', '.join(changed[:5])}; kept the old ones")
        for start in range(0, len(fresh), PARAMS_PER_BATCH):
            chunk = fresh[start:start + PARAMS_PER_BATCH]
            _retry("logging params", lambda: _client(self.root).log_batch(self.run_id, params=chunk))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.active or not tags:
            return
        from mlflow.entities import RunTag
        batch = [RunTag(k, str(v)[:MAX_PARAM_VALUE]) for k, v in tags.items()]
        _retry("setting tags", lambda: _client(self.root).log_batch(self.run_id, tags=batch))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.active or not Path(path).exists():
            return
        _retry(f"logging artifact {path}",
               lambda: _client(self.root).log_artifact(self.run_id, str(path), artifact_path))

    def _start_system_metrics(self, resume: bool) -> None:
        try:
            import psutil  # noqa: F401  (the monitor needs it; without it we simply skip system metrics)
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
            self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                                 resume_logging=resume, tracking_uri=tracking_uri(self.root))
            self._monitor.start()
        except Exception as exc:
            self._monitor = None
            _warn(f"system metrics unavailable ({type(exc).__name__})")

    def _finish(self, status: str) -> None:
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                self._monitor.finish()
        if self.active:
            _retry("closing run", lambda: _client(self.root).set_terminated(self.run_id, status))


MODEL_KEY_TAG = "pir_model_key"
# Which process holds a RUNNING run: a run whose process is gone was killed (see close_orphan_runs).
HOST_TAG, PID_TAG = "pir_host", "pir_pid"


def close_orphan_runs(root: str | os.PathLike, keep: str | None = None) -> list[str]:
    """Mark KILLED the RUNNING runs whose stage process, on this host, no longer exists.

    A SIGKILLed stage (or a crashed machine) cannot close its own run. Runs of other hosts and of live
    processes (parallel queue workers) are left alone, and so is ``keep``, the run a stage is resuming.
    """
    experiment_id = ensure_experiment(root)
    if experiment_id is None:
        return []
    client = _client(root)
    ok, runs = _retry("searching running runs", lambda: client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'"))
    host = processes.this_host()
    orphans = [r.info.run_id for r in (runs if ok else [])
               if r.info.run_id != keep and r.data.tags.get(HOST_TAG) == host
               and r.data.tags.get(PID_TAG, "").isdigit() and not processes.alive(int(r.data.tags[PID_TAG]))]
    for run_id in orphans:
        _retry(f"closing orphan run {run_id}", lambda: client.set_terminated(run_id, "KILLED"))
    if orphans:
        print(f"mlflow: marked {len(orphans)} run(s) of killed stages KILLED", file=sys.stderr)
    return orphans


def find_run(root: str | os.PathLike, model_key: str) -> str | None:
    """The newest run of the model identified by ``model_key`` (train's run key, or a checkpoint's sha256).

    Checkpoints and reports stay free of run ids (they would differ on every rerun and dirty dvc.lock);
    evaluate/analyze find the trained model's run through this tag instead.
    """
    experiment_id = ensure_experiment(root)
    if experiment_id is None:
        return None
    ok, runs = _retry("searching runs", lambda: _client(root).search_runs(
        [experiment_id], filter_string=f"tags.{MODEL_KEY_TAG} = '{model_key}'",
        order_by=["attributes.start_time DESC"], max_results=1))
    return runs[0].info.run_id if ok and runs else None


def _stages_tag(existing: str | None, stage: str) -> str:
    """Stages that logged into one run, in order: a train run reopened by evaluate reads 'train,evaluate'."""
    stages = [s for s in (existing or "").split(",") if s]
    return ",".join(stages if stage in stages else stages + [stage])


def _open_run(root: Path, stage: str, run_id: str | None, label: str | None) -> tuple[str | None, bool]:
    """(run id, resumed?) — reopen ``run_id`` when it exists in this store (its name kept), else create
    a new run named by run_name_for."""
    experiment_id = ensure_experiment(root)
    if experiment_id is None:
        return None, False
    client = _client(root)
    if run_id:
        ok, run = _retry(f"reopening run {run_id}", lambda: client.get_run(run_id))
        if ok:
            _retry("marking run running", lambda: client.update_run(run_id, status="RUNNING"))
            return run_id, True
        _warn(f"run {run_id} not found; starting a new run")
    name = run_name_for(stage, root, label)
    ok, run = _retry("creating run", lambda: client.create_run(experiment_id, run_name=name))
    return (run.info.run_id, False) if ok else (None, False)


@contextlib.contextmanager
def stage_run(root: str | os.PathLike, stage: str, params: Mapping[str, Any], run_id: str | None = None,
              label: str | None = None, model_key: str | None = None, compared: Mapping[str, Any] | None = None,
              system_metrics: bool = True, runtime: Mapping[str, Any] | None = None) -> Iterator[Tracker]:
    """Context manager: a (new or reopened) MLflow run for one stage, tagged and with its params.

    A new run is named ``<label or run_label(root)> · <stage>`` (see run_name_for); a reopened
    one keeps its name. ``model_key`` tags the run with the model it belongs to (see find_run).
    ``runtime`` (pir.device.numerics_record: threads, software, processor, GPU) becomes the tags
    ``runtime.<stage>.<key>``: evaluate and analyze reopen train's run, and each stage keeps its own.
    ``compared`` (pir.pipeline.params.PipelineConfig.compared_params) is logged as top-level params on a new
    run only: a run reopened by a later stage keeps the values of the stage that made it.

    The run ends FINISHED, KILLED when interrupted (Ctrl-C, or SIGTERM through pir.pipeline.entry.main), or
    FAILED when the block raises; the exception always propagates. A run left RUNNING by a SIGKILLed
    process is closed when the next stage starts (close_orphan_runs).
    """
    root = Path(root).resolve()
    close_orphan_runs(root, keep=run_id)
    opened_id, resumed = _open_run(root, stage, run_id, label)
    tracker = Tracker(root, opened_id)
    if tracker.active:
        ok, run = _retry("reading run tags", lambda: _client(root).get_run(opened_id))
        tags = run.data.tags if ok else {}
        tracker.set_tags({
            "dvc_exp_name": os.environ.get("DVC_EXP_NAME") or "workspace",
            # the stage that made the run (filterable: tags.dvc_stage = 'train'); every stage that logged into it
            "dvc_stage": tags.get("dvc_stage") or stage,
            "dvc_stages": _stages_tag(tags.get("dvc_stages"), stage),
            "git_commit": git_commit(root),
            **({MODEL_KEY_TAG: model_key} if model_key else {}),
            HOST_TAG: processes.this_host(), PID_TAG: str(os.getpid()),
            **{f"runtime.{stage}.{key}": value for key, value in (runtime or {}).items() if value is not None},
        })
        tracker.log_params({**params, **(compared if compared and not resumed else {})})
        if system_metrics:
            tracker._start_system_metrics(resume=resumed)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker._finish(status)
