"""Where the job config travels: run one real job in this process and record every agentgen function call that
receives the job's config (the whole ``cfg``, or any node of it), with sys.setprofile.

Printed: the modules whose functions receive the whole cfg, those that receive any node of it, and how often
the whole cfg's route goes back up a layer: in the time-ordered sequence of calls receiving the whole cfg
(consecutive calls in one module collapsed), the steps whose module sits in a higher import-linter layer
(pyproject.toml) than the module before it. Not a timing: figures from any machine are comparable.

    cd <checkout> && python bench/cfg_route.py debug=smoke logger=none trainer.steps=1 eval.episodes=2
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import tomllib
from omegaconf import DictConfig

ROOT = Path.cwd()  # the checkout to measure (run from its root)
sys.path.insert(0, str(ROOT))


def layers() -> list[list[str]]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    spec = next(c for c in contracts if c["type"] == "layers")["layers"]
    return [[m.strip() for m in layer.replace(":", "|").split("|")] for layer in spec]


def layer_of(module: str, table: list[list[str]]) -> int | None:
    parts = module.split(".")
    if parts[0] != "agentgen" or len(parts) < 2:
        return None
    return next((i for i, names in enumerate(table) if parts[1] in names), None)


def main(argv: list[str]) -> None:
    from agentgen.preflight import compose_job
    from agentgen.run import run

    cfg = compose_job(argv)
    roots: set[int] = set()
    whole: list[str] = []
    nodes: set[str] = set()

    def root_of(node: DictConfig) -> DictConfig:
        while node._get_parent() is not None:
            node = node._get_parent()
        return node

    def is_job_config(node: DictConfig) -> bool:
        return id(node) in roots or {"trainer", "rollout", "env", "eval"} <= set(node.keys())

    def profile(frame, event, _arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("agentgen.") or frame.f_code.co_name.startswith("<"):
            return
        code = frame.f_code
        for name in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]:
            value = frame.f_locals.get(name)
            if isinstance(value, DictConfig):
                try:
                    top = root_of(value)
                    if not is_job_config(top):
                        continue
                except Exception:  # noqa: BLE001 - a node being built
                    continue
                roots.add(id(top))
                nodes.add(module)
                if top is value and (not whole or whole[-1] != module):
                    whole.append(module)
            elif hasattr(value, "cfg") and isinstance(getattr(value, "cfg", None), DictConfig):
                nodes.add(module)  # a holder of the config (the workspace) counts as the config passing

    table = layers()
    with tempfile.TemporaryDirectory() as out:
        cfg.output_dir = out
        sys.setprofile(profile)
        try:
            run(cfg)
        finally:
            sys.setprofile(None)
    ups = [(a, b) for a, b in zip(whole, whole[1:])
           if layer_of(a, table) is not None and layer_of(b, table) is not None
           and layer_of(b, table) < layer_of(a, table)]
    print(f"modules receiving the whole cfg: {len(set(whole))}")
    for m in sorted(set(whole)):
        print(f"  {m} (layer {layer_of(m, table)})")
    print(f"modules receiving cfg or a node of it (or a holder of it): {len(nodes)}")
    print(f"route of the whole cfg: {len(whole)} hops, back up a layer {len(ups)} times")
    for a, b in ups:
        print(f"  up: {a} -> {b}")


if __name__ == "__main__":
    main(sys.argv[1:])
