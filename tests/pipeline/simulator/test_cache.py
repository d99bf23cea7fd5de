"""The one simulator cache: the LLM tools, the training env and the assets' resource share its instances."""

from pipeline.simulator.cache import shared_simulator
from pipeline.simulator.tools import WebTools
from training.env import open_simulator


def test_one_simulator_per_snapshot_and_options(small_snapshot):
    sim = shared_simulator(small_snapshot.path)
    assert shared_simulator(str(small_snapshot.path)) is sim
    assert shared_simulator(small_snapshot.id, snapshots_root=small_snapshot.path.parent) is sim
    assert shared_simulator(None, snapshots_root=small_snapshot.path.parent) is sim  # the latest
    other = shared_simulator(small_snapshot.path, snippet_chars=50)
    assert other is not sim and other.snippet_chars == 50
    assert shared_simulator(small_snapshot.path, snippet_chars=50) is other


def test_tools_env_and_resource_use_the_shared_cache(small_snapshot):
    from assets.simulator import SimulatorResource

    sim = shared_simulator(small_snapshot.path)
    assert WebTools(small_snapshot.path)._sim is sim
    assert SimulatorResource(snapshot=str(small_snapshot.path)).get_client() is sim
    env_sim = open_simulator(small_snapshot.path, snippet_chars=120, call_log=False)
    assert env_sim is shared_simulator(small_snapshot.path, snippet_chars=120, call_log=False)
