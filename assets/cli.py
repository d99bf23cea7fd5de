"""`websim`: the command line. `run` materializes the assets through Dagster on a persistent
instance (so every run shows in the UI), `backfill` runs chosen partitions, `serve` serves a snapshot.

    websim run [--profile demo|full] [--config overrides.yaml]   # every asset, end to end
    websim backfill warc_pages KEY [KEY ...]   # or --all
    websim serve [--snapshot DIR] [--port 8000] [--no-call-log]
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pipeline import config

_DAGSTER_YAML = """\
# websim's local Dagster instance (written by `websim run` when DAGSTER_HOME has no dagster.yaml).
concurrency:
  pools:
    default_limit: 1   # websim's assets use no pool: the store's own lock file queues its writers
telemetry:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to `<data dir>/dagster_home`, with a dagster.yaml that limits the store pool."""
    home = Path(os.environ.get("DAGSTER_HOME") or config.data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _instance():
    import dagster as dg

    ensure_dagster_home()
    return dg.DagsterInstance.get()


def _with_console(run_config: dict | None, verbose: bool) -> dict:
    """The job's run config; the runs' full logs are in the instance (UI), the terminal shows the assets' own
    progress lines (INFO: "32/200 candidates generated") and warnings, without Dagster's DEBUG engine events, unless
    --verbose."""
    from assets.profiles import deep_merge

    quiet = {} if verbose else {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    return deep_merge(quiet, run_config or {})


def validate_configs(defs, configs: dict[str, dict]) -> None:
    """Every job's run config checked against its schema before any work starts: a clear error, not a failed run
    an hour in."""
    import dagster as dg

    problems = []
    for job_name, run_config in configs.items():
        try:
            dg.validate_run_config(defs.resolve_job_def(job_name), run_config)
        except dg.DagsterInvalidConfigError as exc:
            problems.append(f"{job_name}: " + "; ".join(e.message for e in exc.errors))
    if problems:
        raise SystemExit("invalid run config, nothing was run:\n  " + "\n  ".join(problems))


def _run_job(defs, instance, job_name: str, partition_key: str | None = None, verbose: bool = False,
             run_config: dict | None = None):
    job = defs.resolve_job_def(job_name)
    run_config = _with_console(run_config, verbose)
    result = job.execute_in_process(run_config=run_config, instance=instance, partition_key=partition_key,
                                    raise_on_error=False)
    failed_checks = [e.event_specific_data for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed]
    if not result.success:
        where = f" partition {partition_key}" if partition_key else ""
        raise SystemExit(f"run {result.run_id} of {job_name}{where} failed; see `dagster dev` (DAGSTER_HOME="
                         f"{os.environ['DAGSTER_HOME']}) for its logs")
    for check in failed_checks:
        print(f"  check failed: {check.asset_key.to_user_string()}.{check.check_name} {check.metadata}", file=sys.stderr)
    return result


def _register(instance, pdef_name: str, keys: list[str]) -> None:
    known = set(instance.get_dynamic_partitions(pdef_name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(pdef_name, new)


def _materialize_partitions(defs, instance, job_name: str, pdef_name: str, keys: list[str],
                            verbose: bool = False, run_config: dict | None = None) -> None:
    from tqdm import tqdm

    _register(instance, pdef_name, keys)
    for key in tqdm(keys, desc=job_name, unit="file"):
        _run_job(defs, instance, job_name, key, verbose, run_config)


def _metadata(result, node: str) -> dict:
    """The metadata values of `node`'s latest materialization in `result` (empty when it did not materialize)."""
    try:
        events = result.asset_materializations_for_node(node)
    except Exception:  # noqa: BLE001 - a node outside this job
        return {}
    return {k: v.value for k, v in events[-1].metadata.items()} if events else {}


def _headline(results: dict) -> list[str]:
    """The figures a user looks for first, from the runs' metadata."""
    lines = []
    hq = _metadata(results.get("synthesis"), "hard_queries")
    if hq:
        lines.append(f"hard questions: {hq.get('verified')} verified of {hq.get('candidates')} candidates "
                     f"(rejections {hq.get('rejections')})")
    rt = _metadata(results.get("synthesis"), "report_tasks")
    if rt:
        lines.append(f"report tasks: {rt.get('dagster/row_count', rt.get('tasks'))}")
    tr = _metadata(results.get("training"), "sft_traces")
    if tr:
        lines.append(f"SFT traces: {tr.get('dagster/row_count')} ({tr.get('traces_demonstration')} demonstrations, "
                     f"{tr.get('traces_teacher')} teacher rollouts)")
    sft = _metadata(results.get("training"), "sft_model")
    if sft:
        lines.append(f"SFT model: {sft.get('model_dir')} (loss, mean of the first and last quarter of steps, "
                     f"{sft.get('start_loss')} -> {sft.get('end_loss')}); "
                     f"valid tool-call rate {sft.get('base_valid_tool_call_rate')} (base) -> "
                     f"{sft.get('sft_valid_tool_call_rate')} (SFT)")
    grpo = _metadata(results.get("training"), "grpo_model")
    if grpo:
        lines.append(f"GRPO model: {grpo.get('model_dir')} (mean rewards {grpo.get('reward_means')})")
    report_sft = _metadata(results.get("training"), "report_sft_model")
    if report_sft:
        lines.append("report SFT model: skipped" if report_sft.get("skipped") else
                     f"report SFT model: {report_sft.get('model_dir')} ({report_sft.get('dagster/row_count')} traces, "
                     f"loss, first and last quarter of steps, {report_sft.get('start_loss')} -> "
                     f"{report_sft.get('end_loss')})")
    report_grpo = _metadata(results.get("training"), "report_grpo_model")
    if report_grpo:
        lines.append("report GRPO model: skipped" if report_grpo.get("skipped") else
                     f"report GRPO model: {report_grpo.get('model_dir')} (mean rewards {report_grpo.get('reward_means')})")
    ev = _metadata(results.get("training"), "evaluation")
    if ev:
        lines.append(f"evaluation on {ev.get('questions')} eval questions: {ev.get('results')}")
        lines += [f"  {row}" for row in _table_lines(ev.get("table"))]
    return lines


def _table_lines(table) -> list[str]:
    """A metadata table's rows as text: a markdown string as it is, a `MetadataValue.table` column by column."""
    if hasattr(table, "records") and hasattr(table, "schema"):
        names = [c.name for c in table.schema.columns]
        return [" | ".join(names)] + [" | ".join(str(r.data.get(n, "")) for n in names) for r in table.records]
    return str(table or "").splitlines()


def _train_questions() -> int:
    """Verified train-split questions in the hard_queries dataset (what the training job learns from)."""
    from training.traces import read_questions

    try:
        return len(read_questions(config.data_dir() / "datasets" / "hard_queries", "train"))
    except (FileNotFoundError, OSError, ValueError):
        return 0


def cmd_run(args: argparse.Namespace) -> int:
    from assets import defs
    from assets.profiles import run_configs
    from assets.resources import InputsResource, StoreResource

    try:
        configs = run_configs(args.profile, args.config)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"websim run: {exc}") from None
    validate_configs(defs, configs)
    inputs, store = InputsResource(), StoreResource()
    warcs, clicks = sorted(inputs.warc_files()), sorted(inputs.clickstream_files())
    if not warcs:
        raise SystemExit(f"no WARC files under {config.warc_dirs()}: set WEBSIM_WARC_DIRS")
    instance = _instance()
    started = time.perf_counter()
    print(f"websim ({args.profile} profile): {len(warcs)} WARC files, {len(clicks)} clickstream files -> "
          f"{store.get().path}")
    stages = ["ingest", "store_build", "synthesis", "training"]
    start = stages.index(getattr(args, "start", None) or "ingest")
    if start:
        print(f"starting at {stages[start]}: {', '.join(stages[:start])} as the last run left them")
    timings: list[tuple[str, str, float]] = []
    if start == 0:
        t0 = time.perf_counter()
        _materialize_partitions(defs, instance, "warc_ingest", "warc_files", warcs, args.verbose,
                                configs["warc_ingest"])
        timings.append(("warc_ingest", f"warc_pages ({len(warcs)} partitions)", time.perf_counter() - t0))
        t0 = time.perf_counter()
        _materialize_partitions(defs, instance, "clickstream_ingest", "clickstream_files", clicks, args.verbose,
                                configs["clickstream_ingest"])
        timings.append(("clickstream_ingest", f"clickstream ({len(clicks)} partitions)", time.perf_counter() - t0))
    results = {}
    for job_name, what in (("store_build", "pages, link graph, snapshot"),
                           ("synthesis", "report tasks and hard questions, with the configured model"),
                           ("training", "SFT traces, SFT, GRPO, report SFT, report GRPO, evaluation")):
        if stages.index(job_name) < start:
            continue
        if job_name == "training" and not _train_questions():
            print("training: skipped, no verified train question in datasets/hard_queries (see the hard_queries "
                  "asset's rejections; a stronger model through the llm resource raises the yield)", flush=True)
            continue
        print(f"{job_name}: {what} ...", flush=True)
        step_started = time.perf_counter()
        results[job_name] = _run_job(defs, instance, job_name, verbose=args.verbose, run_config=configs[job_name])
        print(f"  {job_name} done in {time.perf_counter() - step_started:.0f} s", flush=True)
        timings += [(job_name, step, seconds) for step, seconds in step_times(instance, results[job_name])]
    counts = store.get().counts()
    print(f"\nstore: {store.get().path}")
    for table in ("pages", "url_aliases", "link_graph", "clickstream", "rejects"):
        print(f"  {table:12s} {counts.get(table, 0):>9,d} rows")
    from pipeline.simulator.snapshot import latest_snapshot

    snap = latest_snapshot()
    if snap is not None:
        print(f"snapshot: {snap.path} (serve it with `websim serve`)")
    print(f"datasets: {config.data_dir() / 'datasets'}")
    print(f"models: {config.data_dir() / 'models'}")
    for line in _headline(results):
        print(f"  {line}")
    print(f"dagster runs: DAGSTER_HOME={os.environ['DAGSTER_HOME']} (open with `make ui`)")
    total = time.perf_counter() - started
    print(f"\ntime per asset (load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end):")
    print(timing_table(timings, total))
    print(f"done in {total:.0f} s")
    return 0


def step_times(instance, result) -> list[tuple[str, float]]:
    """(step, seconds) of every step of a finished run, in the order they started."""
    stats = [s for s in instance.get_run_step_stats(result.run_id) if s.start_time and s.end_time]
    return [(s.step_key, s.end_time - s.start_time) for s in sorted(stats, key=lambda s: s.start_time)]


def timing_table(timings: list[tuple[str, str, float]], total: float) -> str:
    """A Markdown table of (job, step, seconds) with each step's share of `total`."""
    lines = ["| job | asset | minutes | share |", "|---|---|---|---|"]
    for job, step, seconds in timings:
        lines.append(f"| {job} | {step} | {seconds / 60:.1f} | {seconds / total:.0%} |")
    lines.append(f"| all | | {total / 60:.1f} | 100% |")
    return "\n".join(lines)


def cmd_backfill(args: argparse.Namespace) -> int:
    from assets import defs
    from assets.resources import InputsResource

    inputs = InputsResource()
    jobs = {"warc_pages": ("warc_ingest", "warc_files", inputs.warc_files),
            "clickstream": ("clickstream_ingest", "clickstream_files", inputs.clickstream_files)}
    job_name, pdef_name, lister = jobs[args.asset]
    available = sorted(lister())
    keys = available if args.all else args.partitions
    unknown = sorted(set(keys) - set(available))
    if unknown or not keys:
        raise SystemExit(f"unknown partitions {unknown}; available: {available}" if unknown
                         else "name partitions or pass --all")
    _materialize_partitions(defs, _instance(), job_name, pdef_name, keys, args.verbose)
    print(f"backfilled {len(keys)} partitions of {args.asset}")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Fail before announcing anything when another process already listens on host:port (uvicorn would log
    "serving ..." first, then die on the bind)."""
    import socket

    try:
        with socket.create_server((host, port)):  # SO_REUSEADDR, as uvicorn binds: a TIME_WAIT port is free
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SystemExit(f"websim serve: cannot listen on {host}:{port} ({reason}); another server holds it? "
                         f"pick another with --port") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.simulator.server import serve
    from pipeline.simulator.snapshot import resolve_snapshot

    try:
        snap = resolve_snapshot(args.snapshot)
    except (FileNotFoundError, ValueError) as exc:  # the message says which snapshot and where it looked
        raise SystemExit(f"websim serve: {exc}; build one with `websim run` (or materialize `snapshot`)") from None
    _check_port_free(args.host, args.port)
    serve(snap.path, host=args.host, port=args.port, workers=args.workers, log_calls=args.call_log)
    return 0


ENVIRONMENT = """\
environment variables (read when a command runs; Dagster run config overrides them):
  WEBSIM_HOME              where websim writes: store, snapshots, datasets, models (default: <repo>/.websim)
  WEBSIM_WARC_DIRS         folders of WARC files, ':'-separated (default: ../shared/data/warc)
  WEBSIM_CLICKSTREAM_DIRS  folders of clickstream dumps, ':'-separated (default: ../shared/data/clickstream)
  WEBSIM_STORE             the DuckDB store (default: $WEBSIM_HOME/store.duckdb)
  WEBSIM_SAMPLE_DATA       the sample data folder (default: ../shared/data)
  WEBSIM_EXECUTOR          Dagster executor: multiprocess (default), in_process, docker, k8s, celery, celery_k8s
  WEBSIM_OPENAI_API_KEY    API key for the llm resource's openai backend (else OPENAI_API_KEY)
  DAGSTER_HOME             the Dagster instance the runs are recorded in (default: $WEBSIM_HOME/dagster_home)
"""


def build_parser() -> argparse.ArgumentParser:
    # -v/--verbose is accepted before and after the subcommand: the subcommands' copy leaves the attribute
    # alone unless given (SUPPRESS), so `websim -v run` and `websim run -v` both set it.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="show Dagster's own logs")
    parser = argparse.ArgumentParser(prog="websim", description=__doc__.split("\n\n")[0], epilog=ENVIRONMENT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="show Dagster's own logs")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[verbose], epilog=ENVIRONMENT,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("run", "materialize every asset end to end")
    p.add_argument("--profile", default="demo", help="run budget: demo (sample data, small model, CPU) or full")
    p.add_argument("--config", default=None, help="YAML of run config per job, merged over the profile")
    p.add_argument("--from", dest="start", default=None, choices=["ingest", "store_build", "synthesis", "training"],
                   help="start at this job, on what the earlier jobs left (e.g. after a stopped or failed run)")
    p.set_defaults(func=cmd_run)

    p = add("backfill", "materialize partitions of a partitioned asset")
    p.add_argument("asset", choices=["warc_pages", "clickstream"])
    p.add_argument("partitions", nargs="*", help="partition keys (file names)")
    p.add_argument("--all", action="store_true", help="every file under the configured folders")
    p.set_defaults(func=cmd_backfill)

    p = add("serve", "serve a snapshot over HTTP")
    p.add_argument("--snapshot", default="latest", help="snapshot folder or id, or 'latest'")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes sharing the port (one snapshot)")
    p.add_argument("--call-log", action=argparse.BooleanOptionalAction, default=True,
                   help="log every call (session, operation, arguments, latency, result ids) to "
                        "<snapshot>.logs/ beside the snapshot (default: on)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        logging.getLogger("dagster").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
