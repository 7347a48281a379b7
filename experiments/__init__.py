"""The experiment sweep behind ``run_experiments.py``, one module per job.

It builds on the library (:mod:`toolkit`; the staleness hash of a run's code is
:mod:`toolkit.fingerprint`) and nothing in the library imports it.

* :mod:`experiments.profiles` — what a sweep trains: datasets, budgets, conditions, seeds;
* :mod:`experiments.plan` — a profile turned into an ordered list of runs, each with its command;
* :mod:`experiments.ledger` — the committed record of finished runs under ``results/runs/``;
* :mod:`experiments.runner` — runs what the ledger lacks, ``--jobs`` at a time, and records it;
* :mod:`experiments.stats` — the primary metric, mean ± std, Welch's t-test, power and verdicts;
* :mod:`experiments.summary` — the ledger reduced to records (one per table row) for the report;
* :mod:`experiments.figures` — deterministic figures of those records;
* :mod:`experiments.report` — RESULTS.md and the README block, one function per section;
* :mod:`experiments.throughput` — the CPU measurement that chose the ``scale`` profile's batch size (and
  compares memory formats and ``torch.compile``);
* :mod:`experiments.fourier_heatmap` — trained classifiers' test error under Fourier-basis noise per frequency;
* :mod:`experiments.seeds` — the seeds per dataset a profile needs, from a finished sweep's spread;
* :mod:`experiments.unsharp_match` — the unsharp control's amounts, matched to the spectral perturbation size;
* :mod:`experiments.examples` — the example grid of what each condition does to a training image.
"""
