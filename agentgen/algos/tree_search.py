"""Tree-GRPO rollout structure (Ji et al. 2025, arXiv 2509.21240; papers.md D).

A *node* is one whole agent step: the model's (thought, action) response plus the observation the
environment returned. Per prompt (environment instance and seed) the search keeps M trees:

1. each tree starts as one full chain rolled out from the root (the initial observation);
2. L times: pick N expansion nodes per tree (uniformly, with replacement, among the root and the
   non-leaf step nodes, as ``TreeNode.get_expand_node`` in the authors' code does: ``random.choices``),
   all picked before any of the round's continuations is added; restore the environment to each
   picked node by replaying its action prefix from the same seed, roll out from there to the end of
   the episode, and attach that continuation as a new branch. Shared prefixes are never regenerated.

Every expansion adds exactly one leaf, so a prompt ends with M * (L * N + 1) leaves. An expansion
costs about half a chain on average, so the budget is about M + M * L * N / 2 chains.

Advantage (papers.md D, the authors' ``adv_estimator == 'tree'``): for leaf i with return R_i,
    A_i = (R_i - mean_tree(R)) / (std_tree(R) + eps) + (R_i - mean_prompt(R)) / (std_prompt(R) + eps)
with unbiased std and eps 1e-6: intra-tree plus inter-tree group normalisation.

From leaves to training samples: in the authors' code every leaf's whole root-to-leaf trajectory is one
training sequence carrying that leaf's advantage, so a step shared by k leaves is trained k times, once
with each leaf's advantage. ``step_advantages(mode="per_leaf")`` reproduces exactly that for the stepwise
trainer (one (node, advantage) sample per leaf through the node). ``mode="sum"`` trains a shared step once
with the summed advantage (same gradient at ratio 1, fewer samples); ``mode="mean"`` once with the mean
(the shared step's expected advantage, weighted like any unshared step).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from agentgen.algos.advantages import grpo_advantages

STEP_ADVANTAGE_MODES = ("per_leaf", "sum", "mean")


@dataclass(eq=False)
class TreeNode:
    """One agent step (or a tree's root, which holds only the initial observation).

    ``reward`` is the environment reward of this step (success bonus, invalid-action penalty);
    ``done`` marks the step that ended the episode; ``generated_tokens`` counts the response tokens
    the policy produced for it; ``data`` is the trainer's own payload (prompt and response ids,
    old log-probs...), never read here."""

    action: str | None = None
    observation: str = ""
    reward: float = 0.0
    done: bool = False
    generated_tokens: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    parent: TreeNode | None = field(default=None, repr=False)
    children: list[TreeNode] = field(default_factory=list, repr=False)
    depth: int = 0
    tree_index: int = 0

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def is_leaf(self) -> bool:
        return not self.is_root and not self.children

    def path(self) -> list[TreeNode]:
        """Step nodes from the first step after the root down to this node (root excluded)."""
        nodes, node = [], self
        while node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def action_prefix(self) -> list[str]:
        """Actions to replay after ``env.reset(seed)`` to put the environment in this node's state."""
        return [n.action for n in self.path()]

    def path_return(self) -> float:
        """Episode return of the trajectory root -> this node: the sum of the step rewards on the path."""
        return float(sum(n.reward for n in self.path()))

    def descendants(self) -> Iterator[TreeNode]:
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass(frozen=True)
class TreeBudget:
    """What one prompt's search cost, to compare with chain GRPO at equal budget."""

    trees: int
    leaves: int
    step_nodes: int  # env steps executed for generation (= policy responses generated)
    replayed_env_steps: int  # env steps spent restoring states before expansions (no tokens)
    generated_tokens: int
    formula_trajectories: float  # M + M * L * N / 2 (papers.md D)
    measured_trajectories: float  # generated tokens / mean tokens of a root-to-leaf trajectory
    training_samples: int
    tokens_per_sample: float
    env_steps_per_sample: float

    def as_metrics(self, prefix: str = "tree/") -> dict[str, float]:
        return {prefix + k: float(v) for k, v in self.__dict__.items()}


class TreeSearch:
    """The M trees of one prompt; the trainer drives rollouts, this class keeps structure and maths.

    Typical use (``rollout(node)`` replays ``node.action_prefix()`` from the prompt's seed and
    returns the continuation as a list of new, unattached ``TreeNode`` steps)::

        search = TreeSearch(M, N, L, random.Random(seed))
        for root in search.roots:                      # 1. M initial chains
            search.add_branch(root, rollout(root))
        for _ in range(L):                             # 2. L expansion rounds
            for node in search.pick_expansion_nodes():
                search.add_branch(node, rollout(node))
        samples = search.step_advantages()             # [(step node, advantage), ...]

    (``run(rollout)`` does exactly that.) Across prompts, batch the generation by collecting the roots /
    picked nodes of all ``TreeSearch`` objects first, then call ``add_branch`` for each.
    """

    def __init__(self, M: int, N: int, L: int, rng: random.Random | None = None):
        for name, value, minimum in (("M", M, 1), ("N", N, 1), ("L", L, 0)):
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"Tree-GRPO {name} must be an integer >= {minimum}, got {value!r}")
        self.M, self.N, self.L = M, N, L
        self.rng = rng if rng is not None else random.Random(0)
        self.roots = [TreeNode(tree_index=m) for m in range(M)]
        self.rounds_done = 0
        self.replayed_env_steps = 0

    # ---------------------------------------------------------------------------------- building
    def expandable_nodes(self, tree_index: int) -> list[TreeNode]:
        """The root and every step node that has children (a continuation can start there)."""
        root = self.roots[tree_index]
        return [root] + [n for n in root.descendants() if n.children]

    def pick_expansion_nodes(self) -> list[TreeNode]:
        """One round's N expansion nodes for each of the M trees (tree-major order), drawn uniformly
        with replacement among ``expandable_nodes``. Every tree must already hold its initial chain."""
        if any(not root.children for root in self.roots):
            raise RuntimeError("every tree needs its initial chain (add_branch(root, ...)) before expansion")
        if self.rounds_done >= self.L:
            raise RuntimeError(f"all L={self.L} expansion rounds are done")
        self.rounds_done += 1
        picks: list[TreeNode] = []
        for m in range(self.M):
            picks.extend(self.rng.choices(self.expandable_nodes(m), k=self.N))
        return picks

    def add_branch(self, node: TreeNode, steps: list[TreeNode]) -> TreeNode:
        """Attach ``steps`` (a continuation rolled out from ``node``'s state) as a chain under ``node``;
        returns the branch's leaf. Only the last step may be terminal (``done``)."""
        if not steps:
            raise ValueError("a branch needs at least one step")
        if node.done:
            raise ValueError("cannot continue from a terminal step: the episode ended there")
        if not node.is_root and not node.children:
            raise ValueError("expansion nodes must be the root or a step with children (not a leaf)")
        top = node
        while top.parent is not None:
            top = top.parent
        if not any(top is root for root in self.roots):
            raise ValueError("the expansion node does not belong to this TreeSearch")
        if any(s.parent is not None or s.children for s in steps):
            raise ValueError("branch steps must be new nodes, not attached to any tree")
        if any(s.done for s in steps[:-1]):
            raise ValueError("only the last step of a branch can end the episode (done=True)")
        self.replayed_env_steps += node.depth
        parent = node
        for step in steps:
            step.parent, step.depth, step.tree_index = parent, parent.depth + 1, node.tree_index
            parent.children.append(step)
            parent = step
        return parent

    def run(self, rollout: Callable[[TreeNode], list[TreeNode]]) -> TreeSearch:
        """Build the whole forest with ``rollout(node) -> continuation steps`` (serial convenience)."""
        for root in self.roots:
            self.add_branch(root, rollout(root))
        for _ in range(self.L - self.rounds_done):
            for node in self.pick_expansion_nodes():
                self.add_branch(node, rollout(node))
        return self

    # ---------------------------------------------------------------------------------- reading
    def leaves(self) -> list[TreeNode]:
        """All leaves, tree by tree, depth-first."""
        return [n for root in self.roots for n in root.descendants() if n.is_leaf]

    def step_nodes(self) -> list[TreeNode]:
        return [n for root in self.roots for n in root.descendants()]

    def expected_leaves(self) -> int:
        return self.M * (self.L * self.N + 1)

    def formula_trajectories(self) -> float:
        return self.M + self.M * self.L * self.N / 2

    # ---------------------------------------------------------------------------------- maths
    def leaf_advantages(self, norm_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
        """A_intra + A_inter for ``leaves()`` (same order), from the leaves' path returns."""
        leaves = self.leaves()
        if not leaves:
            raise RuntimeError("no leaves yet: add the initial chains first")
        returns = torch.tensor([leaf.path_return() for leaf in leaves], dtype=torch.float64)
        tree_ids = torch.tensor([leaf.tree_index for leaf in leaves])
        intra = grpo_advantages(returns, tree_ids, norm_by_std=norm_by_std, eps=eps)
        inter = grpo_advantages(returns, torch.zeros_like(tree_ids), norm_by_std=norm_by_std, eps=eps)
        return (intra + inter).to(torch.float32)

    def step_advantages(
        self, mode: str = "per_leaf", leaf_advantages: torch.Tensor | None = None
    ) -> list[tuple[TreeNode, float]]:
        """Training samples (step node, advantage) from the leaf advantages; see the module docstring
        for the three ``mode`` choices. Order: per leaf, root to leaf (per_leaf); depth-first (sum/mean)."""
        if mode not in STEP_ADVANTAGE_MODES:
            raise ValueError(
                f"unknown step advantage mode {mode!r}; valid modes: {', '.join(STEP_ADVANTAGE_MODES)}"
            )
        leaves = self.leaves()
        adv = self.leaf_advantages() if leaf_advantages is None else leaf_advantages
        if adv.shape != (len(leaves),):
            raise ValueError(
                f"leaf_advantages must have one value per leaf ({len(leaves)}), got shape {tuple(adv.shape)}"
            )
        values = adv.tolist()
        if mode == "per_leaf":
            return [(node, a) for leaf, a in zip(leaves, values) for node in leaf.path()]
        total: dict[TreeNode, float] = {}
        count: dict[TreeNode, int] = {}
        for leaf, a in zip(leaves, values):
            for node in leaf.path():
                total[node] = total.get(node, 0.0) + a
                count[node] = count.get(node, 0) + 1
        if mode == "sum":
            return [(node, total[node]) for node in self.step_nodes()]
        return [(node, total[node] / count[node]) for node in self.step_nodes()]

    def budget(self, mode: str = "per_leaf") -> TreeBudget:
        """Cost of this prompt's search and its training samples (log with ``.as_metrics()``)."""
        leaves, nodes = self.leaves(), self.step_nodes()
        tokens = sum(n.generated_tokens for n in nodes)
        path_tokens = [sum(n.generated_tokens for n in leaf.path()) for leaf in leaves]
        mean_path_tokens = sum(path_tokens) / len(path_tokens) if path_tokens else 0.0
        samples = sum(len(leaf.path()) for leaf in leaves) if mode == "per_leaf" else len(nodes)
        return TreeBudget(
            trees=self.M,
            leaves=len(leaves),
            step_nodes=len(nodes),
            replayed_env_steps=self.replayed_env_steps,
            generated_tokens=tokens,
            formula_trajectories=self.formula_trajectories(),
            measured_trajectories=tokens / mean_path_tokens if mean_path_tokens else 0.0,
            training_samples=samples,
            tokens_per_sample=tokens / samples if samples else 0.0,
            env_steps_per_sample=(len(nodes) + self.replayed_env_steps) / samples if samples else 0.0,
        )
