"""The ledger reduced once to records, one per run and one per table row; the report only renders them.

Only *current* runs (made by the code and settings the plan asks for now) enter the tables and the
statistics; stale and unplanned ones are kept apart, so a table never mixes code versions.

Accuracies are compared on the primary metric, each run's mean test accuracy over its last
``stats.LAST_K`` epochs, declared before the runs; the final epoch's accuracy is kept beside it. A
:class:`Contrast` is one difference the report answers (spectral - plain, spectral - unsharp, ...):
the Welch comparison on both metrics, the generated verdict and the power line. Runs whose test step
measured robustness (``test/robustness.json``) also give a :class:`RobustnessSummary` per dataset. A
profile that repeats another's runs (``Profile.replicates``) reads that profile's ledger too, for a
:class:`Replication` per dataset: the conditions both train at the same budget, compared on the primary metric.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from toolkit.io_utils import read_json

from . import ledger, release
from .plan import Job, plan
from .profiles import (COLOR_CONDITIONS, CONDITIONS, LABELS, LAYOUT_FLAGS, MAIN_GAINS, PROFILES, TITLES, DatasetPlan,
                       Profile)
from .stats import (LAST_K, Comparison, Spread, compare, last_mean, min_detectable_difference, pooled_sd, spread,
                    verdict)

__all__ = ["RunRecord", "Row", "Contrast", "Robustness", "RobustRow", "RobustnessSummary", "Replica", "Replication",
           "DatasetSummary", "GanSummary", "Summary", "summarize", "contrast"]


@dataclass(frozen=True)
class Robustness:
    """One run's ``test/robustness.json``: its checkpoint on a fixed subset of the test images, clean, under
    common corruptions and with its TV bands modified (accuracies as fractions, lists in the file's order)."""
    images: int
    subset_seed: int
    split: str
    image_size: int
    library: str
    clean: float
    mean: float                        # over the included corruptions and severities
    families: tuple                    # (family, accuracy)
    bands: tuple                       # (name such as removed_k0, accuracy)
    corruptions: tuple                 # (name, family, accuracy per severity)
    left_out: tuple                    # (corruption, reason)
    seconds: tuple                     # (what, seconds)

    @property
    def metrics(self) -> dict:
        """Every accuracy the report compares, by metric name: clean, mean, each family, each band setting."""
        return {"clean": self.clean, "mean": self.mean, **dict(self.families), **dict(self.bands)}


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
    release: tuple = ()                # the git tags on the commit the run started from
    vectorial_tv: Optional[bool] = None  # args.json: spectral runs with --color decompose with vectorial TV
    resumed: bool = False              # a step resumed from a checkpoint: ``seconds`` times its last attempt only
    robustness: Optional[Robustness] = None   # test/robustness.json, where the profile evaluates it

    @property
    def primary(self) -> Optional[float]:
        """The primary metric: mean test accuracy of the last LAST_K evaluated epochs."""
        return last_mean([a for _, a in self.curve], LAST_K)

    @property
    def peak_epoch(self) -> Optional[int]:
        """The (first) epoch of the highest test accuracy."""
        return max(self.curve, key=lambda e: e[1])[0] if self.curve else None


@dataclass(frozen=True)
class Row:
    """One condition of a table: its runs and their statistics (accuracies as fractions).

    ``acc`` and ``vs_plain`` are on the primary metric, ``final`` and ``vs_plain_final`` on the final epoch.
    """
    key: str
    label: str
    runs: tuple
    acc: Spread
    train_acc: Spread
    images_per_s: Spread
    vs_plain: Optional[Comparison]
    final: Spread = Spread(0, None, None)
    vs_plain_final: Optional[Comparison] = None


@dataclass(frozen=True)
class Contrast:
    """``a - b`` on the primary metric (and the final epoch), its verdict and the power of its seeds."""
    a: str
    b: str
    comparison: Optional[Comparison]
    final: Optional[Comparison]
    verdict: str
    n: tuple                           # seeds of a and b
    sd: Optional[float]                # pooled standard deviation of the primary metric
    mdd: Optional[float]               # smallest difference detectable at 80% power, two-sided 0.05
    planned: Optional[tuple] = None    # seeds of a and b the profile plans
    margin: Optional[float] = None     # the verdict's "no effect larger than" margin

    @property
    def interim(self) -> bool:
        """Drawn from fewer seeds than planned: the seeds still to come may change the verdict."""
        return self.planned is not None and any(n < p for n, p in zip(self.n, self.planned))


@dataclass(frozen=True)
class RobustRow:
    """One condition's robustness measurements: per metric (:attr:`Robustness.metrics`) the values over seeds."""
    key: str
    label: str
    runs: tuple                        # RunRecords with a robustness measurement
    values: dict                       # metric -> tuple of accuracies, one per run
    acc: dict                          # metric -> Spread
    planned: int = 0                   # seeds the profile plans for the condition


@dataclass(frozen=True)
class RobustnessSummary:
    metrics: tuple                     # clean, mean, the families, the band settings, in the files' order
    families: tuple
    bands: tuple
    rows: tuple                        # RobustRows, in the order of the main table
    contrasts: dict                    # (condition, metric) -> Contrast of condition - plain
    left_out: tuple                    # (corruption, reason, runs that left it out)
    runs: int
    settings: tuple                    # distinct (images, split, subset seed, image size, library, severities)


@dataclass(frozen=True)
class Replica:
    """One condition that this profile and the one it replicates train at the same budget: the primary metric of
    each over its seeds, and this - that."""
    key: str
    label: str
    ours: Spread
    theirs: Spread
    comparison: Optional[Comparison]   # None with fewer than two seeds on a side

    @property
    def agrees(self) -> Optional[bool]:
        """Whether the 95% CI of this - that includes 0; None while there is no interval."""
        return None if self.comparison is None else self.comparison.low <= 0 <= self.comparison.high


@dataclass(frozen=True)
class Replication:
    profile: str                       # the replicated profile
    release: str                       # its release
    rows: tuple                        # Replicas, in the order of the main table


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    title: str
    plan: DatasetPlan
    main: tuple                        # Rows of CONDITIONS that have runs
    concat: Optional[Row]
    ablation: tuple                    # Rows by gain range, the main spectral condition included
    contrasts: dict                    # name -> Contrast: spectral, unsharp, bands (spectral - unsharp), control, both,
                                       # protocol, protocol-unsharp, protocol-bands (the concat conditions)
    curves: dict                       # condition -> (epochs, means, sds)
    confusion: tuple                   # RunRecords with a confusion matrix
    counts: dict                       # done / pending / stale jobs of the plan
    delta_curve: tuple = ()            # (epoch, Comparison of spectral - plain at that epoch)
    color: tuple = ()                  # Rows of the colour runs, vs the colour plain
    color_contrast: Optional[Contrast] = None
    long: tuple = ()                   # Rows of crop+flip and both at long_epochs
    long_contrast: Optional[Contrast] = None
    robustness: Optional[RobustnessSummary] = None
    replication: Optional[Replication] = None


@dataclass(frozen=True)
class GanSummary:
    """gan_test.py's metrics over the GAN seeds: per set, mean ± std of the SWD avg and the spectrum distance."""
    seeds: tuple
    sets: tuple                        # (name, mode, generator updates, SWD avg per seed, spectrum distance per seed)
    floor: Optional[Spread]            # the SWD avg of real vs held-out real draws, over all seeds' draws
    floor_draws: int
    n_real: int
    fid_kid: str
    figure: Optional[Path] = None


@dataclass(frozen=True)
class Summary:
    profile: Profile
    datasets: tuple
    counts: dict                       # over the whole plan
    planned: int
    runs: tuple                        # every RunRecord, in plan order
    gan: Optional[GanSummary] = None
    wall_seconds: float = 0.0
    machines: tuple = ()
    data: tuple = ()
    commits: tuple = ()               # the first and last commit the current runs started from
    layouts: tuple = field(default_factory=tuple)
    release_commit: str = ""          # the commit of the profile's release (from its manifest)
    # (image size, "JxT") of the current runs: J runs at once of T threads each, as the runner recorded
    size_layouts: tuple = field(default_factory=tuple)


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


def _robustness(path: Path) -> Optional[Robustness]:
    r = read_json(path)
    if not r:
        return None
    return Robustness(
        r["images"], r["subset_seed"], r["split"], r["image_size"], r["library"], r["clean"],
        r["mean_corruption_accuracy"], tuple(r["families"].items()), tuple(r.get("bands", {}).items()),
        tuple((k, v["family"], tuple(v["accuracy"])) for k, v in r["corruptions"].items()),
        tuple(r.get("left_out", {}).items()), tuple(r.get("seconds", {}).items()))


def _median_rate(metrics: list) -> Optional[float]:
    """A run's training images/s: the median over its epochs, so that epochs slowed by other work on a shared
    machine (or a run paused for a while) do not set it; None without per-epoch rates."""
    rates = [m["images_per_s"] for m in metrics if m.get("images_per_s")]
    return statistics.median(rates) if rates else None


def _record(e: ledger.Entry) -> RunRecord:
    run = e.run
    res = read_json(e.path / "train" / "results.json") or {}
    metrics = _jsonl(e.path / "train" / "metrics.jsonl")
    test = read_json(e.path / "test" / "metrics.json") if run.get("table") != "gan" else None
    return RunRecord(
        id=e.id, dataset=run["dataset"], table=run["table"], condition=run["condition"], seed=run["seed"],
        gains=run.get("gains", MAIN_GAINS), status=e.status, reason=e.reason, test_acc=res.get("test_acc"),
        train_acc=res.get("final_train_acc"), images_per_s=_median_rate(metrics) or res.get("images_per_s"),
        epochs=res.get("epochs"),
        steps=res.get("steps"), train_images=res.get("train_images"), test_images=res.get("test_images"),
        curve=tuple((m["epoch"], m["test_acc"]) for m in metrics if "test_acc" in m),
        seconds=run["seconds"], interval=(_time(run["started"]), _time(run["finished"])),
        data=(run["data"]["name"], run["data"]["sha256"]),
        machine=f"{run['machine']['cpu']}, {run['machine']['cores']} cores"
                + (f", {run['machine']['gpu']}" if run["machine"].get("gpu") else ""),
        fingerprint=run["fingerprint"], commit=(run.get("git") or {}).get("commit"),
        confusion=_confusion(e.path / "test" / "confusion_matrix.csv"),
        test_top1=test.get("top1") if test else None, release=tuple(run.get("release") or ()),
        vectorial_tv=(read_json(e.path / "train" / "args.json") or {}).get("vectorial_tv"),
        resumed=any(step.get("resumed") for step in run.get("steps", ())),
        robustness=_robustness(e.path / "test" / "robustness.json"))


def _row(key: str, label: str, runs: list, plain: list) -> Row:
    accs, finals = [r.primary for r in runs], [r.test_acc for r in runs]
    vs = key != "plain" and plain is not None
    return Row(key, label, tuple(runs), spread(accs), spread([r.train_acc for r in runs if r.train_acc is not None]),
               spread([r.images_per_s for r in runs if r.images_per_s is not None]),
               compare(accs, [r.primary for r in plain]) if vs else None, spread(finals),
               compare(finals, [r.test_acc for r in plain]) if vs else None)


def _contrast(a: str, b: str, xa: list, xb: list, margin: float, planned: Optional[tuple],
              final: Optional[Comparison] = None) -> Contrast:
    c = compare(xa, xb)
    sd = pooled_sd(xa, xb)
    mdd = min_detectable_difference(sd, len(xa), len(xb)) if sd and len(xa) + len(xb) > 2 else None
    return Contrast(a, b, c, final, verdict(c, margin), (len(xa), len(xb)), sd, mdd, planned, margin)


def contrast(a: Optional[Row], b: Optional[Row], margin: float, planned: Optional[dict] = None) -> Optional[Contrast]:
    """``a - b`` of two rows on the primary metric (None when either has no runs); ``planned``: seeds the
    profile plans per condition of their table."""
    if a is None or b is None:
        return None
    return _contrast(a.key, b.key, [r.primary for r in a.runs], [r.primary for r in b.runs], margin,
                     (planned.get(a.key, 0), planned.get(b.key, 0)) if planned is not None else None,
                     compare([r.test_acc for r in a.runs], [r.test_acc for r in b.runs]))


def _robust(main: tuple, margin: float, planned: dict) -> Optional[RobustnessSummary]:
    """The robustness measurements of the main table's runs that have one, per condition, against plain."""
    rows = []
    for row in main:
        runs = tuple(r for r in row.runs if r.robustness is not None)
        if runs:
            values = {}
            for r in runs:
                for m, v in r.robustness.metrics.items():
                    values.setdefault(m, []).append(v)
            rows.append(RobustRow(row.key, row.label, runs, {m: tuple(v) for m, v in values.items()},
                                  {m: spread(v) for m, v in values.items()}, planned.get(row.key, 0)))
    if not rows:
        return None
    every = [r.robustness for row in rows for r in row.runs]
    families = tuple(dict.fromkeys(f for x in every for f, _ in x.families))
    bands = tuple(dict.fromkeys(b for x in every for b, _ in x.bands))
    metrics = ("clean", "mean") + families + bands
    plain = next((row for row in rows if row.key == "plain"), None)
    contrasts = {(row.key, m): _contrast(row.key, "plain", list(row.values[m]), list(plain.values[m]), margin,
                                         (planned.get(row.key, 0), planned.get("plain", 0)))
                 for row in rows if plain is not None and row is not plain for m in metrics
                 if m in row.values and m in plain.values}
    left = Counter(pair for x in every for pair in x.left_out)
    settings = tuple(dict.fromkeys((x.images, x.split, x.subset_seed, x.image_size, x.library,
                                    max((len(a) for _, _, a in x.corruptions), default=0)) for x in every))
    return RobustnessSummary(metrics, families, bands, tuple(rows), contrasts,
                             tuple((n, why, k) for (n, why), k in left.items()), len(every), settings)


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


def _delta_curve(a: Optional[Row], b: Optional[Row]) -> tuple:
    """Per epoch, the Welch comparison of ``a`` - ``b`` test accuracy (epochs that every run evaluated)."""
    if a is None or b is None:
        return ()
    curves = [dict(r.curve) for r in a.runs + b.runs]
    epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    out = []
    for e in epochs:
        c = compare([dict(r.curve)[e] for r in a.runs], [dict(r.curve)[e] for r in b.runs])
        if c is not None:
            out.append((e, c))
    return tuple(out)


def _rows(cur: list, table: str, conditions, plain_of) -> tuple:
    by = {c: [r for r in cur if r.table == table and r.condition == c] for c in conditions}
    plain = by.get("plain") if plain_of is None else plain_of
    return tuple(_row(c, LABELS.get(c, c), rs, plain) for c, rs in by.items() if rs)


def _current(runs: list, dataset: str) -> list:
    """The runs of ``dataset`` that enter the tables: current, with a test accuracy."""
    return [r for r in runs if r.dataset == dataset and r.status == "current" and r.test_acc is not None]


def _dataset(ds: DatasetPlan, runs: list, jobs: list, statuses: list, margin: float,
             replication: Optional[Replication] = None) -> DatasetSummary:
    cur = _current(runs, ds.name)
    # Conditions a newer profile adds (the report takes the rows there are) come after the known ones.
    main = _rows(cur, "main", CONDITIONS + tuple(dict.fromkeys(r.condition for r in cur if r.table == "main"
                                                              and r.condition not in CONDITIONS)), None)
    plain = next((row.runs for row in main if row.key == "plain"), ())
    concat_runs = [r for r in cur if r.table == "concat"]
    concat = _row("concat", LABELS["concat"], concat_runs, list(plain)) if concat_runs else None
    ablation = ()
    if ds.ablation:
        spectral = [r for r in cur if r.table == "main" and r.condition == "spectral"]
        by_gains = [(MAIN_GAINS, spectral)] + [(g, [r for r in cur if r.table == "ablation" and r.gains == g])
                                               for g in ds.ablation]
        ablation = tuple(_row(g, g, rs, list(plain)) for g, rs in by_gains if rs)
    get = {row.key: row for row in main}
    pairs = {"spectral": ("spectral", "plain"), "unsharp": ("unsharp", "plain"), "bands": ("spectral", "unsharp"),
             "control": ("cropflip", "plain"), "both": ("both", "cropflip"),
             "protocol": ("spectral-concat", "plain"), "protocol-unsharp": ("unsharp-concat", "plain"),
             "protocol-bands": ("spectral-concat", "unsharp-concat")}
    # Seeds planned per condition of each table, from the plan itself (some conditions run fewer seeds).
    count = Counter((j.table, j.condition) for j in jobs)
    planned = {t: {c: n for (table, c), n in count.items() if table == t} for t in ("main", "color", "long")}
    contrasts = {k: c for k, (a, b) in pairs.items()
                 if (c := contrast(get.get(a), get.get(b), margin, planned["main"])) is not None}
    color = _rows(cur, "color", COLOR_CONDITIONS, None)
    cget = {row.key: row for row in color}
    long = _rows(cur, "long", ("cropflip", "both"), ())
    lget = {row.key: row for row in long}
    counts = {s: sum(1 for st in statuses if st == s) for s in ("done", "pending", "stale")}
    return DatasetSummary(ds.name, TITLES[ds.name], ds, main, concat, ablation, contrasts, _curves(main),
                          # a profile that tests every run still draws only the seed-0 matrices it names
                          tuple(r for r in cur if r.confusion is not None and r.table == "main"
                                and r.condition in ds.confusion and r.seed == 0), counts,
                          _delta_curve(get.get("spectral"), get.get("plain")), color,
                          contrast(cget.get("spectral"), cget.get("plain"), margin, planned["color"]), long,
                          contrast(lget.get("both"), lget.get("cropflip"), margin, planned["long"]),
                          _robust(main, margin, planned["main"]), replication)


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
    jobs = lay.get("jobs")
    return (f"{jobs} run{'' if jobs == 1 else 's'} at once × {threads or 'default'} thread{'' if threads == 1 else 's'} "
            f"on {lay.get('device')}")


def _size_layouts(profile: Profile, entries: list) -> tuple:
    size = {d.name: dict(d.budget)["image-size"] for d in profile.datasets}
    return tuple(sorted({(size[e.run["dataset"]], f"{lay['jobs']}x{lay['threads']}") for e in entries
                         if e.status == "current" and e.run.get("dataset") in size
                         and (lay := e.run.get("layout") or {}).get("jobs") and lay.get("threads")}))


def _commit_range(runs: list) -> tuple:
    commits = [r.commit or "?" for r in sorted(runs, key=lambda r: (r.interval, r.id))]
    return tuple(dict.fromkeys([commits[0], commits[-1]])) if commits else ()


def _gan(profile: Profile, cur: list, by_id: dict) -> Optional[GanSummary]:
    """gan_test.py's metrics of every current GAN job, over seeds."""
    runs = [r for r in cur if r.table == "gan"]
    metrics = [m for r in runs if (m := read_json(by_id[r.id].path / "test" / "metrics.json"))]
    if not metrics:
        return None
    names = [k for k, v in metrics[0]["results"].items() if v.get("mode") != "real"]
    sets = []
    for name in names:
        rs = [m["results"][name] for m in metrics if name in m["results"]]
        sets.append((name, rs[0]["mode"], rs[0].get("evaluated_generator_updates", rs[0].get("generator_updates")),
                     tuple(r["swd_x1e3"]["avg"] for r in rs), tuple(r["spectrum_distance"] for r in rs)))
    floors = [v for m in metrics for v in (m.get("swd_floor") or {}).get("avg", [])]
    figure = by_id[runs[0].id].path / "test" / "samples_spectra.png"
    return GanSummary(tuple(r.seed for r in runs), tuple(sets), spread(floors) if floors else None,
                      max(len((m.get("swd_floor") or {}).get("avg", [])) for m in metrics), metrics[0]["n_real"],
                      metrics[0].get("fid_kid", ""), figure if figure.is_file() else None)


def _ledger(profile: Profile, root: Path, manifests: Path) -> tuple:
    """``(jobs, release manifest or None, entries, their RunRecords)`` of ``profile``'s ledger under ``root``."""
    jobs: list[Job] = plan(profile)
    rel = release.load(profile.release, manifests) if profile.release else None
    entries = ledger.read_all(root, profile.name, jobs, rel)
    return jobs, rel, entries, [_record(e) for e in entries]


def _training(job: Job) -> tuple:
    """What a job's training computes: its script and flags, the seed and the memory layout aside."""
    train = job.steps[0]
    return train.script, tuple((f, v) for f, v in train.flags if f not in ("seed",) + LAYOUT_FLAGS)


def _replication(ds: DatasetPlan, jobs: list, runs: list, other: Profile, other_jobs: list,
                 other_runs: list) -> Optional[Replication]:
    """``ds``'s main-table conditions that ``other`` trains with the same script and flags (:func:`_training`), each
    compared on the primary metric of the current runs; None when there are none."""
    def trained(js):
        return {j.condition: _training(j) for j in js if j.dataset == ds.name and j.table == "main"}

    def primaries(rs, condition):
        return [r.primary for r in _current(rs, ds.name) if r.table == "main" and r.condition == condition]

    ours, theirs = trained(jobs), trained(other_jobs)
    rows = []
    for c in ds.conditions:
        if c in theirs and ours.get(c) == theirs[c]:
            a, b = primaries(runs, c), primaries(other_runs, c)
            rows.append(Replica(c, LABELS.get(c, c), spread(a), spread(b), compare(a, b)))
    return Replication(other.name, other.release, tuple(rows)) if rows else None


def summarize(profile: Profile, root: Path, manifests: Path = release.MANIFESTS) -> Summary:
    """Read the ledger of ``profile`` under ``root`` once and reduce it to records (staleness against the
    profile's release, whose manifest is in ``manifests``); and the ledger of the profile it replicates, there too."""
    jobs, rel, entries, runs = _ledger(profile, root, manifests)
    replicated = {}
    if profile.replicates:
        other = PROFILES[profile.replicates]
        other_jobs, _, _, other_runs = _ledger(other, root, manifests)
        replicated = {ds.name: _replication(ds, jobs, runs, other, other_jobs, other_runs) for ds in profile.datasets}
    by_id = {e.id: e for e in entries}
    status = {j.id: ledger.status(j, by_id[j.id].run if j.id in by_id else None, rel)[0] for j in jobs}
    counts = {s: sum(1 for v in status.values() if v == s) for s in ("done", "pending", "stale")}
    datasets = tuple(_dataset(ds, runs, [j for j in jobs if j.dataset == ds.name],
                              [status[j.id] for j in jobs if j.dataset == ds.name], profile.margin,
                              replicated.get(ds.name))
                     for ds in profile.datasets)
    cur = [r for r in runs if r.status == "current"]
    return Summary(profile, datasets, counts, len(jobs), tuple(runs), _gan(profile, cur, by_id), _wall_seconds(cur),
                   tuple(sorted({r.machine for r in cur})), tuple(sorted({r.data for r in cur})),
                   _commit_range(cur),
                   tuple(sorted({_layout(e.run.get("layout") or {}) for e in entries if e.status == "current"})),
                   rel["commit"] if rel else "", _size_layouts(profile, entries))
