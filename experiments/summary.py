"""The ledger reduced once to records, one per run and one per table row; the report only renders them.

Only *current* runs (made by the code and settings the plan asks for now) enter the tables and the
statistics; stale and unplanned ones are kept apart, so a table never mixes code versions.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from io_utils import read_json

from . import ledger
from .plan import Job, plan
from .profiles import CONDITIONS, LABELS, MAIN_GAINS, TITLES, DatasetPlan, Profile
from .stats import Comparison, Spread, compare, spread

__all__ = ["RunRecord", "Row", "DatasetSummary", "Summary", "summarize"]


@dataclass(frozen=True)
class RunRecord:
    id: str
    dataset: str
    table: str
    condition: str
    seed: int
    gains: str
    status: str                        # current | stale | unplanned
    reason: str
    test_acc: Optional[float]
    train_acc: Optional[float]
    images_per_s: Optional[float]
    epochs: Optional[int]
    steps: Optional[int]
    train_images: Optional[int]
    test_images: Optional[int]
    curve: tuple                       # (epoch, test accuracy) per evaluated epoch
    seconds: float
    interval: tuple                    # (started, finished) as datetimes
    data: tuple                        # (archive name, sha256)
    machine: str
    fingerprint: str
    commit: Optional[str]
    confusion: Optional[tuple] = None  # (classes, rows) from the test script
    test_top1: Optional[float] = None


@dataclass(frozen=True)
class Row:
    """One condition of a table: its runs and their statistics (accuracies as fractions)."""
    key: str
    label: str
    runs: tuple
    acc: Spread
    train_acc: Spread
    images_per_s: Spread
    vs_plain: Optional[Comparison]


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    title: str
    plan: DatasetPlan
    main: tuple                        # Rows of CONDITIONS that have runs
    concat: Optional[Row]
    ablation: tuple                    # Rows by gain range, the main spectral condition included
    control: Optional[Comparison]      # crop+flip - plain
    spectral: Optional[Comparison]     # spectral - plain
    curves: dict                       # condition -> (epochs, means, sds)
    confusion: tuple                   # RunRecords with a confusion matrix
    counts: dict                       # done / pending / stale jobs of the plan


@dataclass(frozen=True)
class Summary:
    profile: Profile
    datasets: tuple
    counts: dict                       # over the whole plan
    planned: int
    runs: tuple                        # every RunRecord, in plan order
    gan: Optional[dict] = None         # gan_test.py's metrics.json of a current GAN job
    gan_run: Optional[RunRecord] = None
    gan_figure: Optional[Path] = None  # gan_test.py's samples_spectra.png in that job's ledger entry
    wall_seconds: float = 0.0
    machines: tuple = ()
    data: tuple = ()
    commits: tuple = ()               # the first and last commit the current runs started from
    layouts: tuple = field(default_factory=tuple)


def _time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def _jsonl(path: Path) -> list:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _confusion(path: Path) -> Optional[tuple]:
    if not path.is_file():
        return None
    rows = list(csv.reader(io.StringIO(path.read_text())))
    return tuple(rows[0][1:]), tuple(tuple(int(v) for v in r[1:]) for r in rows[1:])


def _record(e: ledger.Entry) -> RunRecord:
    run = e.run
    res = read_json(e.path / "train" / "results.json") or {}
    metrics = _jsonl(e.path / "train" / "metrics.jsonl")
    test = read_json(e.path / "test" / "metrics.json") if run.get("table") != "gan" else None
    return RunRecord(
        id=e.id, dataset=run["dataset"], table=run["table"], condition=run["condition"], seed=run["seed"],
        gains=run.get("gains", MAIN_GAINS), status=e.status, reason=e.reason, test_acc=res.get("test_acc"),
        train_acc=res.get("final_train_acc"), images_per_s=res.get("images_per_s"), epochs=res.get("epochs"),
        steps=res.get("steps"), train_images=res.get("train_images"), test_images=res.get("test_images"),
        curve=tuple((m["epoch"], m["test_acc"]) for m in metrics if "test_acc" in m),
        seconds=run["seconds"], interval=(_time(run["started"]), _time(run["finished"])),
        data=(run["data"]["name"], run["data"]["sha256"]),
        machine=f"{run['machine']['cpu']}, {run['machine']['cores']} cores"
                + (f", {run['machine']['gpu']}" if run["machine"].get("gpu") else ""),
        fingerprint=run["fingerprint"], commit=(run.get("git") or {}).get("commit"),
        confusion=_confusion(e.path / "test" / "confusion_matrix.csv"),
        test_top1=test.get("top1") if test else None)


def _row(key: str, label: str, runs: list, plain: list) -> Row:
    accs = [r.test_acc for r in runs]
    return Row(key, label, tuple(runs), spread(accs), spread([r.train_acc for r in runs if r.train_acc is not None]),
               spread([r.images_per_s for r in runs if r.images_per_s is not None]),
               compare(accs, [r.test_acc for r in plain]) if key != "plain" else None)


def _curves(rows: tuple) -> dict:
    out = {}
    for row in rows:
        curves = [r.curve for r in row.runs if r.curve]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        by_epoch = [[c[i][1] for c in curves] for i in range(n)]
        out[row.key] = (tuple(curves[0][i][0] for i in range(n)), tuple(spread(v).mean for v in by_epoch),
                        tuple(spread(v).sd for v in by_epoch))
    return out


def _dataset(ds: DatasetPlan, runs: list, statuses: list) -> DatasetSummary:
    cur = [r for r in runs if r.dataset == ds.name and r.status == "current" and r.test_acc is not None]
    plain = [r for r in cur if r.table == "main" and r.condition == "plain"]
    main = tuple(_row(c, LABELS[c], [r for r in cur if r.table == "main" and r.condition == c], plain)
                 for c in CONDITIONS if any(r.table == "main" and r.condition == c for r in cur))
    concat_runs = [r for r in cur if r.table == "concat"]
    concat = _row("concat", LABELS["concat"], concat_runs, plain) if concat_runs else None
    ablation = ()
    if ds.ablation:
        spectral = [r for r in cur if r.table == "main" and r.condition == "spectral"]
        by_gains = [(MAIN_GAINS, spectral)] + [(g, [r for r in cur if r.table == "ablation" and r.gains == g])
                                               for g in ds.ablation]
        ablation = tuple(_row(g, g, rs, plain) for g, rs in by_gains if rs)
    get = {row.key: row for row in main}
    counts = {s: sum(1 for st in statuses if st == s) for s in ("done", "pending", "stale")}
    return DatasetSummary(ds.name, TITLES[ds.name], ds, main, concat, ablation,
                          get["cropflip"].vs_plain if "cropflip" in get else None,
                          get["spectral"].vs_plain if "spectral" in get else None,
                          _curves(main), tuple(r for r in cur if r.confusion is not None), counts)


def _wall_seconds(runs: list) -> float:
    """Seconds during which at least one run was running (gaps between sessions do not count)."""
    total, end = 0.0, None
    for a, b in sorted(r.interval for r in runs):
        if end is None or a > end:
            total, end = total + (b - a).total_seconds(), b
        elif b > end:
            total, end = total + (b - end).total_seconds(), b
    return total


def _layout(lay: dict) -> str:
    threads = lay.get("threads")
    return (f"{lay.get('jobs')} runs at once × {threads or 'default'} thread{'' if threads == 1 else 's'} "
            f"on {lay.get('device')}")


def _commit_range(runs: list) -> tuple:
    commits = [r.commit or "?" for r in sorted(runs, key=lambda r: (r.interval, r.id))]
    return tuple(dict.fromkeys([commits[0], commits[-1]])) if commits else ()


def summarize(profile: Profile, root: Path) -> Summary:
    """Read the ledger of ``profile`` under ``root`` once and reduce it to records."""
    jobs: list[Job] = plan(profile)
    entries = ledger.read_all(root, profile.name, jobs)
    runs = [_record(e) for e in entries]
    by_id = {e.id: e for e in entries}
    status = {j.id: ledger.status(j, by_id[j.id].run if j.id in by_id else None)[0] for j in jobs}
    counts = {s: sum(1 for v in status.values() if v == s) for s in ("done", "pending", "stale")}
    datasets = tuple(_dataset(ds, runs, [status[j.id] for j in jobs if j.dataset == ds.name])
                     for ds in profile.datasets)
    cur = [r for r in runs if r.status == "current"]
    gan_run = next((r for r in cur if r.table == "gan"), None)
    gan = read_json(by_id[gan_run.id].path / "test" / "metrics.json") if gan_run else None
    gan_figure = by_id[gan_run.id].path / "test" / "samples_spectra.png" if gan_run else None
    return Summary(profile, datasets, counts, len(jobs), tuple(runs), gan, gan_run,
                   gan_figure if gan_figure and gan_figure.is_file() else None, _wall_seconds(cur),
                   tuple(sorted({r.machine for r in cur})), tuple(sorted({r.data for r in cur})),
                   _commit_range(cur),
                   tuple(sorted({_layout(e.run.get("layout") or {}) for e in entries if e.status == "current"})))
