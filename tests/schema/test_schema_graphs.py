"""The iterative graph walks of stonetown.schema.graphs against networkx, on random graphs
and on chains far longer than Python's recursion limit."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from stonetown.schema.graphs import cyclic_nodes, leading_to, postorder, strongly_connected_components


def random_graph(seed: int) -> dict[int, set[int]]:
    """A random directed graph with self-loops, cycles and target-only nodes."""
    rnd = random.Random(seed)
    size = rnd.randrange(1, 40)
    return {
        node: {rnd.randrange(size + 5) for _ in range(rnd.randrange(4))}
        for node in range(size)
        if rnd.random() < 0.9
    }


def as_networkx(graph: dict[int, set[int]]) -> nx.DiGraph:
    """The same graph in networkx."""
    oracle = nx.DiGraph()
    oracle.add_nodes_from(graph)
    oracle.add_edges_from((u, v) for u, targets in graph.items() for v in targets)
    return oracle


@pytest.mark.parametrize("seed", range(200))
def test_walks_agree_with_networkx(seed: int) -> None:
    graph = random_graph(seed)
    oracle = as_networkx(graph)
    component = strongly_connected_components(graph)
    expected = {frozenset(c) for c in nx.strongly_connected_components(oracle)}
    found: dict[int, set[int]] = {}
    for node, number in component.items():
        found.setdefault(number, set()).add(node)
    assert {frozenset(c) for c in found.values()} == expected
    # a component's successors outside it completed first: smaller numbers
    for u, v in oracle.edges:
        assert component[v] <= component[u]
    in_cycles = {n for c in expected if len(c) > 1 for n in c}
    assert cyclic_nodes(graph) == in_cycles | {n for n in oracle if oracle.has_edge(n, n)}
    goals = {n for n in oracle if n % 7 == 0}
    assert leading_to(graph, goals) == goals | {a for g in goals for a in nx.ancestors(oracle, g)}
    order = postorder(graph)
    assert sorted(order) == sorted(oracle.nodes)
    position = {node: i for i, node in enumerate(order)}
    acyclic = set(oracle) - cyclic_nodes(graph)
    for u, v in oracle.edges:
        if u in acyclic:
            assert position[v] < position[u]


def test_chains_longer_than_the_recursion_limit() -> None:
    length = 50_000
    chain = {i: {i + 1} for i in range(length)}
    assert len(set(strongly_connected_components(chain).values())) == length + 1
    assert cyclic_nodes(chain) == set()
    assert postorder(chain)[0] == length
    chain[length] = {0}
    assert len(cyclic_nodes(chain)) == length + 1
    assert leading_to(chain, {length // 2}) == set(range(length + 1))
