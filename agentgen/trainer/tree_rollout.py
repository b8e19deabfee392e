"""Tree-GRPO rollouts (papers.md D) driven through the job's ordinary rollout function.

Per prompt (environment instance) the forest holds M trees. Each tree starts as one full chain; then L
rounds each pick N expansion nodes per tree (``TreeSearch.pick_expansion_nodes``) and continue every
picked node to the end of an episode. A continuation is an ``EpisodeSpec`` whose ``meta["prefix"]``
holds the stored turns from the root to the picked node: the episode runner replays their actions from
the same seed to restore the environment and generates only what comes after, so a shared prefix is
never regenerated. All chains of a round, across all prompts, go to the rollout function in one call,
so generation stays batched.

A chain or continuation whose env worker was lost (aborted) is dropped; a prompt keeps the trees whose
initial chain completed (so it may have fewer than M), and a dropped continuation leaves its tree one
leaf short. Both are counted in the metrics.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from agentgen.algos.tree_search import TreeNode, TreeSearch
from agentgen.episode import Episode, EpisodeSpec

RolloutFn = Callable[[list[EpisodeSpec], int], list[Episode]]


def nodes_from_episode(episode: Episode) -> list[TreeNode]:
    """The episode's generated turns as a chain of unattached tree nodes; the last one ends the episode.

    ``node.data``: ``turn`` (the runner's Turn: prompt/response ids, reward, action), ``env`` (the
    environment it ran in) and, on the last node, ``success``. ``node.observation`` is what the agent saw
    when it acted at that node."""
    nodes = [TreeNode(action=t.action, observation=t.observation, reward=t.reward,
                      generated_tokens=len(t.response_ids), data={"turn": t, "env": episode.spec.env})
             for t in episode.turns]
    if nodes:
        nodes[-1].done = True
        nodes[-1].data["success"] = bool(episode.success)
        nodes[-1].data["truncated"] = bool(episode.truncated)
    return nodes


@dataclass
class Forest:
    """The trees of one RL step: ``searches[g]`` is prompt g's ``TreeSearch`` (None if every initial
    chain of that prompt was aborted)."""

    searches: list[TreeSearch | None]
    M: int
    N: int
    L: int
    aborted_chains: int = 0
    aborted_expansions: int = 0
    replay_mismatches: int = 0
    expansion_tokens: list[int] = field(default_factory=list)  # generated tokens of each continuation

    def live(self) -> list[tuple[int, TreeSearch]]:
        return [(g, s) for g, s in enumerate(self.searches) if s is not None]

    def leaves(self) -> list[TreeNode]:
        return [leaf for _, s in self.live() for leaf in s.leaves()]

    def metrics(self, step_advantage: str) -> dict[str, float]:
        """Budget figures summed over prompts, to compare with chain GRPO at equal cost."""
        live = self.live()
        budgets = [s.budget(step_advantage) for _, s in live]
        leaves = sum(b.leaves for b in budgets)
        tokens = sum(b.generated_tokens for b in budgets)
        samples = sum(b.training_samples for b in budgets)
        env_steps = sum(b.step_nodes + b.replayed_env_steps for b in budgets)
        n = max(1, len(live))
        return {
            "tree/prompts": float(len(live)),
            "tree/trees_per_prompt": sum(b.trees for b in budgets) / n,
            "tree/leaves_per_prompt": leaves / n,
            "tree/expected_leaves_per_prompt": float(self.M * (self.L * self.N + 1)),
            "tree/step_nodes_per_prompt": sum(b.step_nodes for b in budgets) / n,
            "tree/replayed_env_steps": float(sum(b.replayed_env_steps for b in budgets)),
            "tree/formula_trajectories_per_prompt": self.M + self.M * self.L * self.N / 2,
            "tree/measured_trajectories_per_prompt": sum(b.measured_trajectories for b in budgets) / n,
            "tree/expansion_tokens_mean": (sum(self.expansion_tokens) / len(self.expansion_tokens)
                                           if self.expansion_tokens else 0.0),
            "tree/aborted_chains": float(self.aborted_chains),
            "tree/aborted_expansions": float(self.aborted_expansions),
            "tree/replay_mismatches": float(self.replay_mismatches),
            "rollout/generated_tokens": float(tokens),
            "rollout/trajectories": float(leaves),
            "rollout/generated_tokens_per_trajectory": tokens / max(1, leaves),
            "rollout/generated_tokens_per_sample": tokens / max(1, samples),
            "rollout/env_steps": float(env_steps),
            "rollout/env_steps_per_sample": env_steps / max(1, samples),
        }


class TreeRollout:
    """Builds one step's forest with ``rollout_fn(specs, step) -> episodes`` (the job's rollout)."""

    def __init__(self, M: int, N: int, L: int, rollout_fn: RolloutFn, run_seed: int = 0):
        TreeSearch(M, N, L)  # validates M, N, L with a clear message
        self.M, self.N, self.L = M, N, L
        self.rollout_fn = rollout_fn
        self.run_seed = run_seed

    def build(self, seeds: list[int], step: int) -> Forest:
        forest = Forest([None] * len(seeds), self.M, self.N, self.L)
        # 1. M independent chains per prompt
        specs = [EpisodeSpec(env="", seed=seed, group=g, meta={"tree": m})
                 for g, seed in enumerate(seeds) for m in range(self.M)]
        chains: dict[int, list[tuple[int, Episode]]] = {}
        for ep in self.rollout_fn(specs, step):
            if not ep.aborted and ep.turns:
                chains.setdefault(ep.spec.group, []).append((int(ep.spec.meta["tree"]), ep))
        forest.aborted_chains = len(specs) - sum(len(v) for v in chains.values())
        for g, found in chains.items():
            found.sort(key=lambda x: x[0])
            rng = random.Random(f"tree-grpo/{self.run_seed}/{step}/{g}")
            search = TreeSearch(len(found), self.N, self.L, rng)
            for root, (_, ep) in zip(search.roots, found):
                search.add_branch(root, nodes_from_episode(ep))
            forest.searches[g] = search
        # 2. L rounds of N expansions per tree, all prompts' continuations rolled out together
        for _ in range(self.L):
            picks: list[tuple[TreeSearch, TreeNode]] = []
            specs = []
            for g, search in forest.live():
                for node in search.pick_expansion_nodes():
                    # the env the tree ran in (a mixture's rollout must not move a continuation elsewhere)
                    env = (node if not node.is_root else node.children[0]).data.get("env", "")
                    specs.append(EpisodeSpec(env=env, seed=seeds[g], group=g, meta={
                        "expansion": len(picks), "prefix": [n.data["turn"] for n in node.path()]}))
                    picks.append((search, node))
            attached = 0
            for ep in self.rollout_fn(specs, step):
                forest.replay_mismatches += ep.replay_mismatches
                if ep.aborted or not ep.turns:
                    continue
                search, node = picks[int(ep.spec.meta["expansion"])]
                branch = nodes_from_episode(ep)
                search.add_branch(node, branch)
                forest.expansion_tokens.append(sum(n.generated_tokens for n in branch))
                attached += 1
            forest.aborted_expansions += len(picks) - attached
        return forest
