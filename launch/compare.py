"""Supervised-only vs the full method and its ablations, several seeds: python launch/compare.py --out runs/compare

  --config configs/demo.py        the config file; each variant is `<file>:<variant>`
  --variants sup,semi,no_contrast,no_boundary
  --seeds 0,1,2                   seed = network initialisation and data order (same for every variant)
  --base_variant smoke            added to every run's variant (here: seconds-long runs, for tests)
  --steps N                       training steps of every run (default: the config's train.num_steps)
  --set key=value                 any further config override for every run (repeatable); a key
                                  that a compared variant sets itself is refused (it would undo it)
  --out DIR                       results.json, results.md, comparison.png; runs in DIR/runs/<variant>_seed<k>
  --rerun                         retrain runs that already finished (default: reuse them)
  --no_train                      only summarise the finished runs (the others are left out, not trained)
  --compilation_cache DIR         persistent XLA cache shared by the runs (default OUT/jax_cache; 'none')
  --cores 0,1                     train one run per listed CPU core side by side, each pinned to its
                                  core (one XLA thread per run); default: one run at a time, all cores

Every run is `launch/train.py` in its own subprocess, so an interrupted comparison resumes where it
stopped. Logic in mofgseg_jax/experiments/{compare,figure}.py.
"""

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mofgseg_jax import cli  # noqa: E402
from mofgseg_jax.errors import InputError, one_line_errors  # noqa: E402
from mofgseg_jax.experiments import compare  # noqa: E402


def load_config(path: str, variant: str):
    spec = importlib.util.spec_from_file_location("compare_config", path)
    if spec is None or not os.path.isfile(path):
        raise InputError(f"--config {path}: no such config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return module.get_config(variant)
    except ValueError as e:  # an unknown variant (from --variants or --base_variant), as train.py reports it
        raise InputError(f"--config {path}:{variant}: {e}") from e


def parse_args(argv):
    p = cli.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/demo.py")
    p.add_argument("--variants", default=",".join(compare.VARIANTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--base_variant", default="", help="variant added to each run's, e.g. 'smoke' -> <file>:sup,smoke")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--runs_dir", default="", help="default: OUT/runs")
    p.add_argument("--rerun", action="store_true")
    p.add_argument("--no_train", action="store_true", help="summarise finished runs only; train nothing")
    p.add_argument("--compilation_cache", default="", help="persistent XLA cache shared by the runs "
                   "(default: OUT/jax_cache; 'none' to disable)")
    p.add_argument("--cores", default="", help="train one run per listed CPU core side by side, each pinned "
                   "to its core, e.g. 0,1 (default: one run at a time on all cores)")
    p.add_argument("--grid_images", type=int, default=4, help="validation images in the figure (0 = none)")
    p.add_argument("--grid_network", choices=compare.NETWORKS, default="teacher")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set {item!r}: expected KEY=VALUE (e.g. --set optim.lr=0.02)")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    args.overrides = overrides
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: expected comma-separated integers")
    try:
        args.core_list = [int(c) for c in args.cores.split(",") if c.strip()]
    except ValueError:
        p.error(f"--cores {args.cores!r}: expected comma-separated CPU core numbers, e.g. 0,1")
    usable = sorted(os.sched_getaffinity(0))
    if len(set(args.core_list)) != len(args.core_list) or not set(args.core_list) <= set(usable):
        p.error(f"--cores {args.cores!r}: expected distinct cores among those this process may use: "
                f"{','.join(map(str, usable))}")
    return args


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=compare.REPO_ROOT,
                                       stderr=subprocess.DEVNULL, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    config = load_config(args.config, ",".join(filter(None, [args.variant_list[0], args.base_variant])))
    with_base = lambda v: ",".join(filter(None, [v, args.base_variant]))  # noqa: E731
    compare.refuse_overrides_of_variant_keys(
        args.overrides, {v: load_config(args.config, with_base(v)) for v in args.variant_list},
        load_config(args.config, with_base("semi")))
    steps = args.steps or int(config.train.num_steps)
    runs_dir = args.runs_dir or os.path.join(args.out, "runs")
    runs = compare.plan_runs(args.variant_list, args.seed_list, runs_dir)
    cache_dir = "" if args.compilation_cache == "none" else (args.compilation_cache or os.path.join(args.out, "jax_cache"))

    root = args.overrides.get("data.root", config.data.root)
    if config.data.name == "demo":  # generate once, before the runs (not inside the first one's time)
        from mofgseg_jax.data import demo  # noqa: PLC0415

        t0 = time.perf_counter()
        if demo.ensure(root):
            print(f"generated the demo dataset in {root} ({time.perf_counter() - t0:.0f} s)")

    results = compare.run_all(args.config, runs, steps=steps, overrides=args.overrides, rerun=args.rerun,
                               base_variant=args.base_variant, cache_dir=cache_dir, train_missing=not args.no_train,
                               cores=args.core_list)
    if not results:
        raise SystemExit(f"error: no finished run in {runs_dir} for --variants {args.variants} --seeds {args.seeds}")
    summary = compare.summarize(results, args.variant_list)
    meta = {"title": args.title or f"{os.path.basename(args.config)}: supervised vs semi-supervised, split {config.data.split}",
            "command": " ".join(["python", "launch/compare.py"] + (sys.argv[1:] if argv is None else list(argv))),
            "config": args.config, "steps": steps, "overrides": args.overrides, "seeds": args.seed_list,
            "data_split": config.data.split, "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)",
            "git_commit": git_commit()}
    train_seconds = sum(r["wall_s"] or 0 for r in results)  # includes reused runs' recorded times
    meta["train_wall_min"] = round(train_seconds / 60, 1)

    grid, seed = None, None
    if args.grid_images > 0 and "sup" in summary and "semi" in summary:
        from mofgseg_jax.experiments.figure import predict_val_images  # noqa: PLC0415

        seed = min(set(summary["sup"]["seeds"]) & set(summary["semi"]["seeds"]))
        by = {(r.variant, r.seed): r.workdir for r in runs}
        sup = predict_val_images(by[("sup", seed)], num_images=args.grid_images, network=args.grid_network)
        semi = predict_val_images(by[("semi", seed)], num_images=args.grid_images, network=args.grid_network)
        grid = {"image": sup["image"], "label": sup["label"],
                "columns": [("supervised", sup["pred"]), ("semi-sup.", semi["pred"])]}
    from mofgseg_jax.data.specs import load_spec  # noqa: PLC0415
    from mofgseg_jax.experiments.figure import draw  # noqa: PLC0415

    spec = load_spec(config.data.name, num_classes=int(config.model.num_classes),
                     class_names=tuple(config.data.class_names or ()))
    os.makedirs(args.out, exist_ok=True)
    figure = draw(os.path.join(args.out, "comparison.png"), summary, grid=grid, palette=spec.palette,
                  class_names=spec.class_names, title=f"{config.data.name} {config.data.split}, {steps} steps"
                  + (f" (grid: {args.grid_network}, seed {seed})" if grid else ""))
    meta["total_wall_min"] = round((time.perf_counter() - start) / 60, 1)
    json_path, md_path = compare.write_results(args.out, summary, results, meta)
    print(open(md_path).read())
    print(f"wrote {md_path}, {json_path}, {figure}")
    return {"summary": summary, "results": results, "paths": [md_path, json_path, figure]}


if __name__ == "__main__":
    with one_line_errors():
        main()
