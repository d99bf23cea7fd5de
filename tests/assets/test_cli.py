"""`websim run`'s profiles and config checks: every profile is valid run config for every job, an overrides file is
merged over it, and a bad value stops the command before any work (no store, no Dagster run)."""

import pytest
import yaml

from assets import defs
from assets.cli import main, validate_configs
from assets.profiles import JOBS, PROFILES, deep_merge, run_configs


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_is_valid_run_config(profile):
    configs = run_configs(profile)
    assert set(configs) == set(JOBS)
    validate_configs(defs, configs)  # raises SystemExit on any schema error


def test_the_full_profile_asks_for_more_than_the_demo():
    demo, full = run_configs("demo"), run_configs("full")
    count = lambda c: c["synthesis"]["ops"]["evidence_chains"]["config"]["count"]  # noqa: E731
    assert count(full) > 10 * count(demo)


def test_every_profile_trains_both_rounds_and_evaluates_every_stage():
    for profile in PROFILES:
        ops = run_configs(profile)["training"]["ops"]
        for asset in ("report_sft_model", "report_grpo_model"):
            assert asset in ops and not ops[asset]["config"].get("skip"), (profile, asset)
        assert ops["evaluation"]["config"].get("eval_report_tasks", 0) >= 0, profile  # -1 would leave reports out
    full = run_configs("full")["training"]["ops"]
    assert full["report_sft_model"]["config"]["max_steps"] == -1  # whole epochs over the train report tasks


def test_overrides_merge_over_the_profile(tmp_path):
    path = tmp_path / "over.yaml"
    path.write_text(yaml.safe_dump({"synthesis": {"ops": {"evidence_chains": {"config": {"seed": 3}}}}}))
    ops = run_configs("demo", path)["synthesis"]["ops"]
    from assets.profiles import PROFILES

    profile_count = PROFILES["demo"]["synthesis"]["ops"]["evidence_chains"]["config"]["count"]
    assert ops["evidence_chains"]["config"] == {"count": profile_count, "seed": 3}  # the profile's count kept
    assert ops["report_tasks"] == PROFILES["demo"]["synthesis"]["ops"]["report_tasks"]
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4}) == {"a": {"b": 1, "c": 3}, "d": 4}


def test_bad_config_stops_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"training": {"ops": {"sft_model": {"config": {"max_steps": "eight"}}}}}))
    with pytest.raises(SystemExit, match=r"training: .*sft_model:config:max_steps"):
        main(["run", "--config", str(bad)])
    unknown_job = tmp_path / "unknown.yaml"
    unknown_job.write_text(yaml.safe_dump({"trainig": {}}))
    with pytest.raises(SystemExit, match="unknown job"):
        main(["run", "--config", str(unknown_job)])
    with pytest.raises(SystemExit, match="unknown profile"):
        main(["run", "--profile", "huge"])
    # nothing was started: no Dagster instance, no store
    assert not (tmp_path / "dagster_home").exists()
    from pipeline import config

    assert not config.store_path().exists()


def test_a_wrong_config_value_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    bad = tmp_path / "vlm.yaml"
    bad.write_text(yaml.safe_dump({"synthesis": {"resources": {"llm": {"config": {"backend": "vlm"}}}}}))
    with pytest.raises(SystemExit, match=r"synthesis: .*llm:config:backend not in enum type LLMBackend got vlm"):
        main(["run", "--config", str(bad)])
    index = tmp_path / "index.yaml"
    index.write_text(yaml.safe_dump({"store_build": {"ops": {"snapshot": {"config": {"index_kind": "lucene"}}}}}))
    with pytest.raises(SystemExit, match=r"store_build: .*index_kind not in enum type"):
        main(["run", "--config", str(index)])
    assert not (tmp_path / "dagster_home").exists()


def test_every_backend_name_is_accepted():
    from assets.llm_resource import LLMBackend

    for backend in LLMBackend:
        configs = run_configs("demo")
        configs["synthesis"] = deep_merge(configs["synthesis"],
                                          {"resources": {"llm": {"config": {"backend": backend.value}}}})
        validate_configs(defs, configs)


def test_broken_yaml_names_the_file_and_line(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("synthesis:\n  ops: {evidence_chains: {config: {count: 2}}\n  resources: [\n")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--config", str(broken)])
    message = str(exc.value)
    assert f"{broken} is not valid YAML" in message and f'in "{broken}", line 3' in message
    assert "Traceback" not in message


@pytest.mark.parametrize("argv", [["-v", "backfill", "warc_pages"], ["backfill", "-v", "warc_pages"],
                                  ["backfill", "warc_pages", "--verbose"]])
def test_verbose_before_or_after_the_subcommand(argv):
    from assets.cli import build_parser

    assert build_parser().parse_args(argv).verbose is True
    assert build_parser().parse_args(["backfill", "warc_pages"]).verbose is False


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["serve", "--help"]])
def test_help_names_the_environment_variables(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for var in ("WEBSIM_HOME", "WEBSIM_WARC_DIRS", "WEBSIM_CLICKSTREAM_DIRS", "WEBSIM_STORE", "WEBSIM_EXECUTOR",
                "WEBSIM_OPENAI_API_KEY", "DAGSTER_HOME"):
        assert var in out, var


def test_the_help_names_only_variables_websim_reads():
    """Every variable the help names is read somewhere in the code (no documented variable that does nothing)."""
    import re
    from pathlib import Path

    from assets.cli import ENVIRONMENT

    source = "".join(p.read_text() for d in ("assets", "pipeline", "training")
                     for p in (Path(__file__).parents[2] / d).rglob("*.py"))
    for var in re.findall(r"^\s+([A-Z_]+)\s", ENVIRONMENT, re.M):
        assert f'"{var}"' in source, var


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_a_missing_snapshot_says_so_without_a_traceback(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "assets.cli", "serve", "--snapshot", str(tmp_path / "nope"),
                          "--port", str(_free_port())], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "serving" not in out.stderr
    assert f"no snapshot '{tmp_path / 'nope'}'" in out.stderr


def test_serve_on_a_busy_port_fails_before_announcing(small_snapshot, caplog):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit, match=rf"cannot listen on 127.0.0.1:{port} \(Address already in use\)"):
            main(["serve", "--snapshot", str(small_snapshot.path), "--port", str(port)])
    assert "serving" not in caplog.text


@pytest.mark.parametrize("flag, logged", [([], True), (["--no-call-log"], False), (["--call-log"], True)])
def test_serve_call_log_switch(flag, logged, small_snapshot, monkeypatch):
    import pipeline.simulator.server as server

    calls = []
    monkeypatch.setattr(server, "serve", lambda snapshot, **kwargs: calls.append((snapshot, kwargs)))
    port = _free_port()
    assert main(["serve", "--snapshot", str(small_snapshot.path), "--port", str(port), *flag]) == 0
    (snapshot, kwargs), = calls
    assert snapshot == small_snapshot.path and kwargs["log_calls"] is logged and kwargs["port"] == port


def test_the_timing_table_has_every_step_of_a_run():
    import dagster as dg

    from assets.cli import step_times, timing_table

    @dg.asset
    def first():
        return 1

    @dg.asset
    def second(first):
        return first + 1

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([first, second], instance=instance)
    steps = step_times(instance, result)
    assert [name for name, _ in steps] == ["first", "second"] and all(s >= 0 for _, s in steps)
    table = timing_table([("j", name, 30.0) for name, _ in steps], 120.0)
    assert "| j | first | 0.5 | 25% |" in table and table.endswith("| all | | 2.0 | 100% |")


def test_the_headline_prints_an_evaluation_table_of_either_kind():
    import dagster as dg

    from assets.cli import _table_lines

    table = dg.MetadataValue.table(
        records=[dg.TableRecord({"model": "base", "accuracy": 0.0}), dg.TableRecord({"model": "sft", "accuracy": 0.25})],
        schema=dg.TableSchema(columns=[dg.TableColumn("model", "string"), dg.TableColumn("accuracy", "float")]))
    assert _table_lines(table) == ["model | accuracy", "base | 0.0", "sft | 0.25"]
    assert _table_lines("| model |\n|---|\n| base |") == ["| model |", "|---|", "| base |"]
    assert _table_lines(None) == []


@pytest.mark.parametrize("start, jobs", [
    ("training", ["training"]),
    ("synthesis", ["synthesis", "training"]),
    (None, ["warc_ingest", "clickstream_ingest", "store_build", "synthesis", "training"]),
])
def test_run_from_a_job_skips_the_earlier_ones(start, jobs, tmp_path, monkeypatch):
    import assets.cli as cli
    from tests.support import sample

    sample("warc")  # `websim run` refuses to start without the default WARC folder

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    called = []
    monkeypatch.setattr(cli, "_materialize_partitions", lambda defs, inst, job, *a, **k: called.append(job))
    monkeypatch.setattr(cli, "_run_job", lambda defs, inst, job, **k: called.append(job))
    monkeypatch.setattr(cli, "step_times", lambda instance, result: [])
    monkeypatch.setattr(cli, "_train_questions", lambda: 1)
    assert main(["run"] + (["--from", start] if start else [])) == 0
    assert called == jobs
