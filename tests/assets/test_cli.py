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
