#!/usr/bin/env python3
"""Run every benchmark entry and write bench/results.json and bench/RESULTS.md.

python tools/bench/run.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from harness import Result  # noqa: E402


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in (
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "numpy",
        "scipy",
        "tensorflow-cpu",
        "torch",
        "torchvision",
        "pytorch-fid",
        "timm",
        "diffusers",
        "pillow",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    try:
        import jax

        if jax.default_backend() != "cpu":
            desc += f"; accelerator: {jax.devices()[0].device_kind} ({jax.default_backend()})"
    except Exception:  # noqa: BLE001 - the description is best effort
        pass
    return desc


def _atomic_write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)


def _fmt(x, digits=4):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


#: Measurements these benchmarks do not make (the hardware was not at hand), said in RESULTS.md.
NOT_MEASURED = [
    "**bf16 base-64-style U-Net train step on a GPU** (model FLOP/s utilisation, images/s): "
    "not measured; no GPU was available on the machines these benchmarks ran on, so there is "
    "no accelerator number for the mixed-precision train step. The CPU train-step entries above "
    "are float32.",
]


def render_markdown(meta: dict, results: list[dict], errors: dict[str, str]) -> str:
    lines = [
        "# synthaug benchmarks",
        "",
        f"- date: {meta['date']}"
        + (
            f" (entries re-run then: {', '.join(meta['rerun']['entries'])}; the others measured "
            f"{meta['rerun']['others_from']}; wall time = sum of the entries' times)"
            if meta.get("rerun")
            else ""
        ),
        f"- machine: {meta['machine']}",
        f"- mode: {'quick' if meta['quick'] else 'full'}",
        f"- wall time: {meta.get('total_seconds', 0):.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in meta.get("entry_seconds", {}).items())
        + ")",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "Each timed value is the median of at least 5 runs after warm-up; the peer is measured",
        "in the same run. Ratio > 1 is better than the peer, except where the target reads ≤.",
        "",
        "| entry | metric | value | peer | peer value | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        tgt = (
            "—"
            if r["target"] is None
            else ("≤ " if r["lower_is_better"] else "≥ ") + _fmt(r["target"])
        )
        met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
        lines.append(
            f"| {r['name']} | {r['metric']} | {_fmt(r['value'])} {r['unit']} | {r['peer'] or '—'} | "
            f"{_fmt(r['peer_value'])} | {_fmt(r['ratio'], 3)} | {tgt} | {met} |"
        )
    notes = [r for r in results if r.get("notes")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- **{r['name']}**: {r['notes']}" for r in notes]
    if errors:
        lines += ["", "## Entries that failed", ""] + [f"- `{k}`: {v}" for k, v in errors.items()]
    lines += ["", "## Not measured", ""] + [f"- {x}" for x in NOT_MEASURED]
    return "\n".join(lines) + "\n"


def _merge_previous(path: pathlib.Path, meta: dict, results: list[dict], entry_seconds: dict):
    """With ``--only``: keep the other entries' results of an earlier run in the same mode.

    Results with the names just measured replace the earlier ones; the rest are kept, and the
    header says which entries were re-run and when the others were measured.
    """
    if not path.is_file():
        return meta, results
    old = json.loads(path.read_text())
    if old.get("quick") != meta["quick"]:
        return meta, results
    names = {r["name"] for r in results}
    kept = [r for r in old.get("results", []) if r["name"] not in names]
    seconds = {**old.get("entry_seconds", {}), **entry_seconds}
    meta = {
        **meta,
        "entry_seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "rerun": {
            "entries": sorted(entry_seconds),
            "others_from": old.get("rerun", {}).get("others_from", old["date"]),
        },
    }
    return meta, kept + results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a smoke run (< 5 minutes)")
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="entry names (bench_<name>.py); their results replace those in an existing "
        "results.json of the same mode, the other entries' results are kept",
    )
    ap.add_argument("--out", default=str(ROOT / "bench"))
    args = ap.parse_args(argv)
    entries = sorted(HERE.glob("bench_*.py"))
    if args.only:
        entries = [e for e in entries if e.stem.removeprefix("bench_") in args.only]
    results: list[dict] = []
    errors: dict[str, str] = {}
    entry_seconds: dict[str, float] = {}
    t_run = time.perf_counter()
    for path in entries:
        name = path.stem.removeprefix("bench_")
        print(f"== {name}", flush=True)
        t_entry = time.perf_counter()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
            out: list[Result] = mod.run(quick=args.quick)
        except Exception as e:  # an entry's failure is reported, the others still run
            traceback.print_exc()
            errors[name] = f"{type(e).__name__}: {e}"
            entry_seconds[name] = round(time.perf_counter() - t_entry, 1)
            continue
        entry_seconds[name] = round(time.perf_counter() - t_entry, 1)
        print(f"   ({name}: {entry_seconds[name]:.0f} s)", flush=True)
        for r in out:
            d = r.as_dict()
            results.append(d)
            print(
                f"   {r.name}: {r.metric} = {_fmt(r.value)} {r.unit}"
                + (
                    f"; peer {r.peer} = {_fmt(r.peer_value)}; ratio {_fmt(r.ratio, 3)}"
                    if r.peer
                    else ""
                )
                + (
                    f"; target {'<=' if r.lower_is_better else '>='} {r.target} met={r.met}"
                    if r.target is not None
                    else ""
                ),
                flush=True,
            )
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "quick": args.quick,
        "versions": _versions(),
        "entry_seconds": entry_seconds,
        "total_seconds": round(time.perf_counter() - t_run, 1),
    }
    out_dir = pathlib.Path(args.out)
    if args.only:
        meta, results = _merge_previous(out_dir / "results.json", meta, results, entry_seconds)
    _atomic_write(
        out_dir / "results.json",
        json.dumps({**meta, "results": results, "errors": errors}, indent=2),
    )
    _atomic_write(out_dir / "RESULTS.md", render_markdown(meta, results, errors))
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'RESULTS.md'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
