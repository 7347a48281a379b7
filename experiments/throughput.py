"""Training throughput of the dissertation's classifier on this CPU, to choose a profile's batch and layout.

Times the training step that ``training.train_one_epoch`` makes (forward, cross-entropy, backward,
Adam step) of ResNet-18 with a 1-channel stem and the 256-128 MLP head (``models.make_classifier``)
on random gray images, for each image size and batch size, in two layouts of a 2-core machine:

* ``1x2``: one process with two torch threads;
* ``2x1``: two processes at once with one thread each (the sweep's ``--jobs 2 --threads-per-job 1``);
  their images/s are added.

Each configuration runs in every ``--formats`` entry, the same float32 maths in other forms: ``contiguous``
(NCHW, the default), ``channels_last`` (weights and batch in NHWC memory, the train scripts'
``--channels-last``), ``compile`` (``torch.compile`` of the model; its compilation happens in the
warm-up, which ``--compile-lead`` lengthens) and ``channels_last+compile``; the ratio of each to
``contiguous`` is printed at the end and kept in the JSON.

Both processes of ``2x1`` time the same wall-clock window (they start timing at an agreed moment
after their warm-up), so the sum is a throughput, not two numbers from different loads. Other work
on the machine lowers every number, and a 2-thread process far more than two 1-thread ones (an
OpenMP team waits for its slowest thread), so each configuration waits until the cores are idle,
records how busy they were, and reports the median step as well as the mean.

    python -m experiments.throughput --output-dir results
    python -m experiments.throughput --configs 128:128 --formats contiguous,channels_last,compile \
        --seconds 60 --lead 40 --output-dir results/formats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from toolkit import cli, io_utils

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("contiguous", "channels_last", "compile", "channels_last+compile")


def _in_format(model, x, fmt: str) -> tuple:
    """``(network, batch)`` in ``fmt`` (one of :data:`FORMATS`)."""
    import torch
    if "channels_last" in fmt.split("+"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return (torch.compile(model) if "compile" in fmt.split("+") else model), x


def _worker(batch: int, size: int, threads: int, start_at: float, seconds: float, fmt: str) -> dict:
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(ROOT))
    from toolkit.models import make_classifier
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = make_classifier("resnet18", num_classes=10, in_channels=1, hidden=(256, 128), dropout=0.5)
    net, x = _in_format(model, torch.rand(batch, 1, size, size) * 2 - 1, fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    y = torch.randint(0, 10, (batch,))
    net.train()

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    late = time.time() > start_at
    while time.time() < start_at:
        time.sleep(0.01)
    t0, times = time.perf_counter(), []
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    dt = time.perf_counter() - t0
    # The median step is robust to a burst of other work on the machine; the mean is what a run gets.
    return {"steps": len(times), "seconds": round(dt, 3), "images_per_s": round(len(times) * batch / dt, 1),
            "median_step_images_per_s": round(batch / statistics.median(times), 1), "late_start": late}


def _busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores' time spent outside idle over ``seconds`` (from /proc/stat)."""
    def read():
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def wait_until_idle(max_busy: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until other work leaves the cores idle; return the last busy share."""
    end = time.time() + timeout
    busy = _busy_fraction()
    while busy > max_busy and time.time() < end:
        busy = _busy_fraction(2.0)
    return busy


def measure(batch: int, size: int, layout: str, seconds: float, lead: float, fmt: str = "contiguous") -> dict:
    """One configuration: start the processes, return their summed images/s."""
    procs, threads = (1, 2) if layout == "1x2" else (2, 1)
    start_at = time.time() + lead
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "experiments.throughput", "--worker", str(batch), str(size), str(threads),
           repr(start_at), str(seconds), fmt]
    ps = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    outs = []
    for p in ps:
        out, _ = p.communicate(timeout=120 + lead + seconds)
        if p.returncode != 0:
            raise RuntimeError(f"throughput worker failed (exit {p.returncode})")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return {"batch": batch, "image_size": size, "layout": layout, "format": fmt, "processes": procs,
            "threads": threads,
            "images_per_s": round(sum(o["images_per_s"] for o in outs), 1),
            "median_step_images_per_s": round(sum(o["median_step_images_per_s"] for o in outs), 1),
            "per_process": outs}


def _key(r: dict) -> tuple:
    return r["image_size"], r["batch"], r["layout"], r.get("format", "contiguous")


def best_of(rows: list) -> list:
    """Per configuration, the try with the most images/s: other work only ever slows a try down."""
    best = {}
    for r in rows:
        if _key(r) not in best or r["images_per_s"] > best[_key(r)]["images_per_s"]:
            best[_key(r)] = r
    return [{"image_size": k[0], "batch": k[1], "layout": k[2], "format": k[3], "images_per_s": v["images_per_s"],
             "tries": [x["images_per_s"] for x in rows if _key(x) == k]}
            for k, v in sorted(best.items())]


def format_ratios(best: list) -> list:
    """Each format's best images/s over ``contiguous``'s in the same configuration (where both were measured)."""
    base = {_key(b)[:3]: b["images_per_s"] for b in best if b["format"] == "contiguous"}
    return [{**{k: b[k] for k in ("image_size", "batch", "layout", "format", "images_per_s")},
             "contiguous_images_per_s": base[_key(b)[:3]],
             "ratio": round(b["images_per_s"] / base[_key(b)[:3]], 3) if base[_key(b)[:3]] else None}
            for b in best if b["format"] != "contiguous" and _key(b)[:3] in base]


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.make_parser("python -m experiments.throughput", __doc__.split("\n\n")[0])
    cli.add_output_dir(p, None, "DIR/throughput_cpu.json", "None: print only")
    p.add_argument("--configs", default="32:20,32:128,32:256,64:128,64:256", metavar="PX:N,...",
                   help="image size (pixels) : batch size pairs (batch 20 is the dissertation's)")
    p.add_argument("--layouts", default="1x2,2x1", metavar="PxT,...",
                   help="processes x threads per process; 2x1 runs two timed processes at once")
    p.add_argument("--seconds", type=float, default=4.0, help="timed window per configuration, in seconds")
    p.add_argument("--lead", type=float, default=7.0, help="seconds for start-up and warm-up before timing")
    p.add_argument("--repeats", type=int, default=2, metavar="N", help="tries per configuration; the best counts")
    p.add_argument("--max-busy", type=float, default=0.1,
                   help="before each configuration, wait until other work uses at most this share of the cores")
    p.add_argument("--wait", type=float, default=120.0, help="longest wait for that, in seconds")
    p.add_argument("--formats", default="contiguous", metavar="FORMAT,...",
                   help=f"memory formats and compilation to time side by side, of {', '.join(FORMATS)}")
    p.add_argument("--compile-lead", type=float, default=150.0,
                   help="extra seconds of warm-up for the formats with compile (torch.compile compiles then)")
    p.add_argument("--worker", nargs=6, metavar=("BATCH", "PX", "THREADS", "START_AT", "SECONDS", "FORMAT"),
                   help="internal: be one timing process of a layout (this module starts them)")
    return p


def _formats(text: str) -> list:
    formats = [f for f in text.replace(" ", "").split(",") if f]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise cli.UserError(f"--formats: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(FORMATS)}")
    return formats


def main(args) -> int:
    if args.worker:
        b, s, t, at, sec, fmt = args.worker
        print(json.dumps(_worker(int(b), int(s), int(t), float(at), float(sec), fmt)))
        return 0
    formats, rows = _formats(args.formats), []
    # Repeats go round all configurations, so that a burst of other work spoils one try, not all of one.
    for rep in range(args.repeats):
        for size, batch in (map(int, c.split(":")) for c in args.configs.split(",")):
            for layout in args.layouts.split(","):
                for fmt in formats:
                    busy = wait_until_idle(args.max_busy, args.wait)
                    lead = args.lead + (args.compile_lead if "compile" in fmt else 0)
                    r = measure(batch, size, layout, args.seconds, lead, fmt)
                    r.update(repeat=rep, busy_before=round(busy, 2))
                    rows.append(r)
                    print(f"{size}x{size} batch {batch} {layout} {fmt}: {r['images_per_s']:.1f} img/s (median step "
                          f"{r['median_step_images_per_s']:.1f}; cores {100 * busy:.0f}% busy before)", flush=True)
    best = best_of(rows)
    ratios = format_ratios(best)
    for q in ratios:
        print(f"{q['image_size']}x{q['image_size']} batch {q['batch']} {q['layout']}: {q['format']} / contiguous = "
              f"{q['ratio']:.2f} ({q['images_per_s']:.1f} vs {q['contiguous_images_per_s']:.1f} img/s, best tries)")
    out = {"what": "ResNet-18 (1-channel stem, 256-128 MLP head) training steps on random gray images, Adam",
           "command": "python -m experiments.throughput " + " ".join(sys.argv[1:]),
           "measured": time.strftime("%Y-%m-%d", time.gmtime()),
           "machine": io_utils.machine(),
           "seconds_per_configuration": args.seconds, "best": best, "format_ratios": ratios, "results": rows}
    if args.output_dir:
        path = Path(args.output_dir) / "throughput_cpu.json"
        io_utils.write_json(path, out)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
