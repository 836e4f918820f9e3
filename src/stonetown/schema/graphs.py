"""Linear-time graph walks over schema graphs, without recursion.

Schema graphs map a node (usually a (type, relation) pair) to the nodes it leads to. Every
walk here is iterative and visits each node and edge a bounded number of times, so a schema
of thousands of definitions or a chain of hundreds of permissions costs neither Python stack
nor quadratic time. Nodes only named as targets count as nodes without edges.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

N = TypeVar("N", bound=Hashable)
Graph = Mapping[N, Iterable[N]]


def strongly_connected_components(graph: Mapping[N, Iterable[N]]) -> dict[N, int]:
    """Each node's strongly connected component, as a number (Tarjan's algorithm, iterative).

    Components are numbered in the order Tarjan completes them: a component's successors
    (outside it) always have smaller numbers.
    """
    index: dict[N, int] = {}
    low: dict[N, int] = {}
    component: dict[N, int] = {}
    stack: list[N] = []
    on_stack: set[N] = set()
    counter = 0
    components = 0
    for root in graph:
        if root in index:
            continue
        # frames of (node, iterator over its successors)
        work: list[tuple[N, Iterable[N]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(graph.get(root, ()))))
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:  # type: ignore[attr-defined]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, ()))))
                    advanced = True
                    break
                if nxt in on_stack and index[nxt] < low[node]:
                    low[node] = index[nxt]
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                if low[node] < low[parent]:
                    low[parent] = low[node]
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = components
                    if member == node:
                        break
                components += 1
    return component


def cyclic_nodes(graph: Mapping[N, Iterable[N]]) -> set[N]:
    """The nodes that lead back to themselves through at least one edge."""
    component = strongly_connected_components(graph)
    sizes: dict[int, int] = {}
    for number in component.values():
        sizes[number] = sizes.get(number, 0) + 1
    cyclic = {node for node, number in component.items() if sizes[number] > 1}
    cyclic.update(node for node, targets in graph.items() if node in set(targets))
    return cyclic


def leading_to(graph: Mapping[N, Iterable[N]], goals: Iterable[N]) -> set[N]:
    """Every node from which some goal can be reached (the goals included)."""
    reverse: dict[N, list[N]] = {}
    for node, targets in graph.items():
        for target in targets:
            reverse.setdefault(target, []).append(node)
    found = set(goals)
    todo = list(found)
    while todo:
        for source in reverse.get(todo.pop(), ()):
            if source not in found:
                found.add(source)
                todo.append(source)
    return found


def postorder(graph: Mapping[N, Iterable[N]]) -> list[N]:
    """Every node after the nodes it leads to, except where a cycle makes that impossible
    (depth-first finishing order, iterative). Nodes only named as targets are included."""
    done: set[N] = set()
    order: list[N] = []
    for root in graph:
        if root in done:
            continue
        done.add(root)
        work: list[tuple[N, Iterable[N]]] = [(root, iter(graph.get(root, ())))]
        while work:
            node, successors = work[-1]
            for nxt in successors:  # type: ignore[attr-defined]
                if nxt not in done:
                    done.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, ()))))
                    break
            else:
                work.pop()
                order.append(node)
    return order
