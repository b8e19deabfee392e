"""Tree-GRPO: tree construction counts, expansion-node choice, prefix replay, advantages and budget."""

import math
import random

import pytest
import torch

from agentgen.algos.tree_search import TreeNode, TreeSearch


class CountingWorld:
    """A deterministic toy episode: the state is the list of actions taken; it ends after a random
    (seeded by the state) number of steps and succeeds when the last action is "win"."""

    def __init__(self, seed: int):
        self.seed = seed
        self.generations = 0

    def rollout(self, node: TreeNode) -> list[TreeNode]:
        prefix = node.action_prefix()
        # restoring by replay must reproduce the node's own observation
        assert self.observe(prefix) == (node.observation if prefix else self.observe([]))
        rng = random.Random(f"{self.seed}|{'/'.join(prefix)}|{self.generations}")
        self.generations += 1
        steps, state = [], list(prefix)
        for _ in range(rng.randint(1, 4)):
            action = rng.choice(["left", "right", "win"])
            state.append(action)
            steps.append(
                TreeNode(action=action, observation=self.observe(state), generated_tokens=rng.randint(5, 20))
            )
            if action == "win":
                break
        steps[-1].done = True
        steps[-1].reward = 10.0 if steps[-1].action == "win" else 0.0
        return steps

    @staticmethod
    def observe(state: list[str]) -> str:
        return "start" if not state else "/".join(state)


@pytest.mark.parametrize("M,N,L", [(1, 1, 0), (4, 2, 1), (3, 2, 2), (2, 3, 3)])
def test_leaf_count_is_M_times_LN_plus_one(M, N, L):
    search = TreeSearch(M, N, L, random.Random(0)).run(CountingWorld(seed=M * 100 + N * 10 + L).rollout)
    assert len(search.leaves()) == M * (L * N + 1) == search.expected_leaves()
    assert all(leaf.done for leaf in search.leaves())
    assert search.formula_trajectories() == M + M * L * N / 2


def test_expansion_picks_root_or_non_leaf_nodes_of_each_tree_before_the_round():
    world = CountingWorld(seed=1)
    search = TreeSearch(3, 4, 2, random.Random(7))
    for root in search.roots:
        search.add_branch(root, world.rollout(root))
    for _ in range(2):
        before = [set(map(id, search.expandable_nodes(m))) for m in range(3)]
        picks = search.pick_expansion_nodes()
        assert len(picks) == 3 * 4
        for i, node in enumerate(picks):
            tree = i // 4  # tree-major order
            assert node.tree_index == tree and id(node) in before[tree]
            assert node.is_root or node.children
        for node in picks:
            search.add_branch(node, world.rollout(node))
    with pytest.raises(RuntimeError, match="rounds"):
        search.pick_expansion_nodes()


def test_one_step_chain_can_only_expand_from_the_root_with_replacement():
    search = TreeSearch(1, 3, 1, random.Random(0))
    search.add_branch(search.roots[0], [TreeNode(action="win", reward=10.0, done=True)])
    assert search.pick_expansion_nodes() == [search.roots[0]] * 3


def test_the_search_rng_alone_decides_the_tree():
    """Same seed, same tree, whatever the global random state; other seeds pick other nodes (the world is
    fixed, so only the expansion picks differ)."""

    def shape(seed, global_seed=0):
        random.seed(global_seed)
        search = TreeSearch(2, 2, 2, random.Random(seed)).run(CountingWorld(seed=5).rollout)
        return [tuple(leaf.action_prefix()) for leaf in search.leaves()]

    assert shape(3, global_seed=1) == shape(3, global_seed=2)
    assert len({tuple(shape(seed)) for seed in range(8)}) > 1


def test_branches_attach_below_the_expanded_node_and_share_its_prefix():
    search = TreeSearch(1, 1, 1, random.Random(0))
    root = search.roots[0]
    a = TreeNode(action="a", observation="a")
    search.add_branch(root, [a, TreeNode(action="b", observation="a/b", done=True)])
    leaf = search.add_branch(a, [TreeNode(action="c", observation="a/c", done=True)])
    assert leaf.action_prefix() == ["a", "c"] and leaf.depth == 2 and leaf.parent is a
    assert search.replayed_env_steps == 1  # restoring node "a" replays one action


def build_hand_tree() -> tuple[TreeSearch, dict[str, TreeNode]]:
    """tree 0: root -> a -> {l1 (+10), l2 (+10)}, root -> l3 (0);
    tree 1: root -> b -> {l4 (0), x (-0.1) -> l5 (+0.1)}: returns 10, 10, 0, 0, 0."""
    search = TreeSearch(2, 1, 1)
    n = {k: TreeNode(action=k, generated_tokens=10) for k in ["a", "l1", "l2", "l3", "b", "l4", "x", "l5"]}
    for k, r in {"l1": 10.0, "l2": 10.0, "x": -0.1, "l5": 0.1}.items():
        n[k].reward = r
    for k in ["l1", "l2", "l3", "l4", "l5"]:
        n[k].done = True
    r0, r1 = search.roots
    search.add_branch(r0, [n["a"], n["l1"]])
    search.add_branch(n["a"], [n["l2"]])
    search.add_branch(r0, [n["l3"]])
    search.add_branch(r1, [n["b"], n["l4"]])
    search.add_branch(n["b"], [n["x"], n["l5"]])
    return search, n


def test_leaf_advantage_is_intra_plus_inter_tree_by_hand():
    search, _ = build_hand_tree()
    assert [leaf.action for leaf in search.leaves()] == ["l1", "l2", "l3", "l4", "l5"]
    adv = search.leaf_advantages()
    # intra tree 0: returns [10, 10, 0], mean 20/3, unbiased std sqrt(100/3); tree 1: [0, 0] -> 0
    s0 = math.sqrt(100 / 3) + 1e-6
    intra = [(10 - 20 / 3) / s0, (10 - 20 / 3) / s0, (0 - 20 / 3) / s0, 0.0, 0.0]
    # inter: [10, 10, 0, 0, 0], mean 4, unbiased std sqrt(30)
    s = math.sqrt(30) + 1e-6
    inter = [6 / s, 6 / s, -4 / s, -4 / s, -4 / s]
    torch.testing.assert_close(adv, torch.tensor([i + j for i, j in zip(intra, inter)]), atol=1e-5, rtol=1e-5)


def test_step_advantage_modes_by_hand():
    search, n = build_hand_tree()
    adv = search.leaf_advantages().tolist()
    leaf_adv = dict(zip(["l1", "l2", "l3", "l4", "l5"], adv))

    per_leaf = search.step_advantages("per_leaf")
    # every leaf's whole path is a sample: l1 (a, l1), l2 (a, l2), l3 (l3), l4 (b, l4), l5 (b, x, l5)
    assert [node.action for node, _ in per_leaf] == ["a", "l1", "a", "l2", "l3", "b", "l4", "b", "x", "l5"]
    assert [a for node, a in per_leaf if node is n["a"]] == pytest.approx([leaf_adv["l1"], leaf_adv["l2"]])

    summed = {node.action: a for node, a in search.step_advantages("sum")}
    mean = {node.action: a for node, a in search.step_advantages("mean")}
    assert len(summed) == 8  # every step node once
    assert summed["a"] == pytest.approx(leaf_adv["l1"] + leaf_adv["l2"])
    assert mean["a"] == pytest.approx((leaf_adv["l1"] + leaf_adv["l2"]) / 2)
    assert mean["b"] == pytest.approx((leaf_adv["l4"] + leaf_adv["l5"]) / 2)
    assert mean["x"] == summed["x"] == pytest.approx(leaf_adv["l5"])
    with pytest.raises(ValueError, match="per_leaf"):
        search.step_advantages("max")


def test_budget_counts_tokens_env_steps_and_samples():
    search, _ = build_hand_tree()
    budget = search.budget("per_leaf")
    assert budget.leaves == 5 and budget.step_nodes == 8 and budget.generated_tokens == 80
    assert budget.replayed_env_steps == 2  # expansions from "a" and "b" (depth 1 each); roots cost nothing
    assert budget.training_samples == 10
    assert budget.tokens_per_sample == pytest.approx(8.0)
    assert budget.env_steps_per_sample == pytest.approx((8 + 2) / 10)
    # root-to-leaf paths hold 20, 20, 10, 20, 30 tokens (mean 20): 80 tokens = 4 trajectories
    assert budget.measured_trajectories == pytest.approx(4.0)
    assert search.budget("mean").training_samples == 8
    assert "tree/generated_tokens" in budget.as_metrics()


def test_invalid_uses_fail_clearly():
    search = TreeSearch(1, 1, 1)
    with pytest.raises(RuntimeError, match="initial chain"):
        search.pick_expansion_nodes()
    with pytest.raises(ValueError, match="at least one step"):
        search.add_branch(search.roots[0], [])
    with pytest.raises(ValueError, match="last step"):
        search.add_branch(search.roots[0], [TreeNode(action="a", done=True), TreeNode(action="b")])
    leaf = search.add_branch(search.roots[0], [TreeNode(action="a", done=True)])
    with pytest.raises(ValueError, match="terminal"):
        search.add_branch(leaf, [TreeNode(action="b")])
    other = TreeSearch(1, 1, 1)
    with pytest.raises(ValueError, match="does not belong"):
        search.add_branch(other.roots[0], [TreeNode(action="b", done=True)])
    with pytest.raises(ValueError, match="M must be"):
        TreeSearch(0, 1, 1)
