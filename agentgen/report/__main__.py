"""``python -m agentgen.report <sweep dir | wandb:<entity>/<project>/<group>>``: aggregate a sweep and
write report.html (self-contained), report.md, tables/*.csv and figures/*.png."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agentgen.report.aggregate import DEFAULT_BASELINES, DEFAULT_COMBINE_OVER, Settings
from agentgen.report.document import build_report
from agentgen.report.render import write_report
from agentgen.report.sources import WANDB_SOURCE_PREFIX, load_source, parse_wandb_source


def parse_baselines(items: list[str]) -> dict[str, str]:
    out = dict(DEFAULT_BASELINES)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(
                f"--baseline {item!r} must look like FACTOR=VALUE, e.g. augment=none, think=true or sft=none")
        out[key.strip()] = value.strip()
    return out


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m agentgen.report",
        description="Aggregate a sweep's evaluations into the study's tables: success matrices, Delta-OOD, "
                    "OOD ranking, forgetting/transfer and the environment profile.")
    p.add_argument("source", help="a sweep directory (summary.json files, found recursively) or "
                                  "'wandb:<entity>/<project>/<group>' (wandb's public API, online)")
    p.add_argument("--out", help="output directory (default: <sweep dir>/report, or ./report-<group> for wandb)")
    p.add_argument("--last-k", type=int, default=4, help="checkpoints averaged per run (default 4, as the study)")
    p.add_argument("--metric", default="success_rate",
                   help="eval metric to report (default success_rate = pass@1; e.g. pass@8 if jobs log it)")
    p.add_argument("--tie-points", type=float, default=0.5, help="OOD ranking tie threshold in points (default 0.5)")
    p.add_argument("--baseline", action="append", default=[], metavar="FACTOR=VALUE",
                   help="baseline value of a factor for Delta-OOD (defaults: "
                        + ", ".join(f"{k}={v}" for k, v in DEFAULT_BASELINES.items()) + "); repeatable")
    p.add_argument("--combine-over", default=DEFAULT_COMBINE_OVER,
                   help="variant key whose OOD ranks are summed, like Table 1's V1+V2 (default: start)")
    p.add_argument("--wandb-group", help="with a directory of offline wandb runs: only this group")
    p.add_argument("--title", help="report title")
    p.add_argument("--no-plots", action="store_true", help="tables only (skips matplotlib)")
    p.add_argument("--log-wandb", metavar="PROJECT",
                   help="also log the report tables to a new wandb run in PROJECT (honours WANDB_MODE)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        baselines = parse_baselines(args.baseline)
        settings = Settings(last_k=args.last_k, metric=args.metric, tie_points=args.tie_points,
                            baselines=baselines, combine_over=args.combine_over)
        loaded = load_source(args.source, args.wandb_group)
    except (argparse.ArgumentTypeError, ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    if args.out:
        out = Path(args.out)
    elif args.source.startswith(WANDB_SOURCE_PREFIX):
        out = Path(f"report-{parse_wandb_source(args.source)[2]}")
    else:
        out = Path(args.source) / "report"
    try:
        report = build_report(loaded.runs, args.source, settings, loaded.profiles, title=args.title,
                              plots=not args.no_plots, problems=loaded.problems)
    except ValueError as err:
        parser.error(str(err))
    paths = write_report(report, out)
    agg = report.aggregate
    print(f"read {len(loaded.runs)} summaries ({len(agg.completed)} completed, {len(agg.failed)} failed), "
          f"{len(loaded.problems)} left out")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {paths['html']}\nwrote {paths['markdown']}\nwrote {out / 'tables'}/ ({len(report.tables)} CSV)")
    if args.log_wandb:
        import wandb

        from agentgen.report.wandb_tables import log_report_tables

        is_wandb = args.source.startswith(WANDB_SOURCE_PREFIX)
        group = parse_wandb_source(args.source)[2] if is_wandb else args.wandb_group
        run = wandb.init(project=args.log_wandb, job_type="report", group=group,
                         name=f"report {group or Path(args.source).name}",
                         config={"source": args.source, "last_k": args.last_k, "metric": args.metric},
                         dir=os.environ.get("WANDB_DIR", str(out)))
        log_report_tables(report, run)
        run.finish()
        print(f"logged {len(report.tables)} tables to wandb run {run.id}")
    return 0 if agg.completed or agg.profiles else 1


if __name__ == "__main__":
    sys.exit(main())
