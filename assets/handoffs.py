"""Where an asset wrote, and what its metadata shows: the one hand-off convention of the training group.

An asset that writes a folder records it in its materialization metadata (`path` for a dataset, `model_dir` for a
model); the next asset reads the latest materialization's value (`latest_path`), and its config can point at
another folder instead. Dataset folders default to `<data dir>/datasets/<name>` (`PathsResource.dataset_dir`).
"""

import base64
import json
from pathlib import Path

import dagster as dg

from assets.simulator import SimulatorResource


def latest_path(instance: dg.DagsterInstance, key: dg.AssetKey, name: str) -> Path | None:
    """The folder the latest materialization of `key` recorded under metadata `name`, or None."""
    event = instance.get_latest_materialization_event(key)
    value = event.asset_materialization.metadata.get(name) if event and event.asset_materialization else None
    return Path(value.value) if value is not None else None


def model_dir(instance: dg.DagsterInstance, configured: str, key: dg.AssetKey, label: str, field: str) -> Path:
    """The configured model folder, else the latest materialization's of `key`; a failure when there is none."""
    path = Path(configured) if configured else latest_path(instance, key, "model_dir")
    if path is None or not path.is_dir():
        raise dg.Failure(f"no {label} model folder ({path}): materialize {key.to_user_string()} first or set {field}")
    return path


def snapshot_of(simulator: SimulatorResource, snapshot_id: str):
    """The snapshot a dataset was made on when it is still there, else the simulator's (latest or pinned) one."""
    from pipeline.simulator.snapshot import resolve_snapshot

    if snapshot_id and (simulator.root() / snapshot_id).is_dir():
        return resolve_snapshot(snapshot_id, simulator.root())
    return simulator.get_snapshot()


def md_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def sample_md(messages: list[dict], limit: int = 2500) -> str:
    lines = []
    for m in messages:
        calls = "".join(f"\n→ {c['function']['name']}({json.dumps(c['function']['arguments'])})"
                        for c in m.get("tool_calls") or [])
        lines.append(f"[{m['role']}] {m.get('content') or ''}{calls}")
    text = "\n\n".join(lines)
    return f"```\n{text[:limit]}{' ...' if len(text) > limit else ''}\n```"


def json_metadata(d: dict) -> dict:
    """Lists and dicts as JSON metadata values, the rest as is."""
    return {k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v) for k, v in d.items()}
