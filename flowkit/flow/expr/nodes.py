"""The expression tree: frozen dataclass nodes, and the walks over them that need no
evaluation (children, names read, canonical spelling, depth)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 50  # nesting of the tree (parentheses, operators, fields); deeper would exhaust the stack


@dataclass(frozen=True)
class Node:
    pos: int


@dataclass(frozen=True)
class Const(Node):
    value: Any


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Attr(Node):
    target: Node
    attr: str


@dataclass(frozen=True)
class Index(Node):
    target: Node
    index: Node


@dataclass(frozen=True)
class ListExpr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Compare(Node):
    first: Node
    ops: tuple[str, ...]
    rest: tuple[Node, ...]


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]


def children(node: Node) -> tuple[Node, ...]:
    match node:
        case Attr(target=t) | Unary(operand=t):
            return (t,)
        case Index(target=t, index=i):
            return (t, i)
        case ListExpr(items=items) | BoolOp(operands=items) | Call(args=items):
            return items
        case BinOp(left=a, right=b):
            return (a, b)
        case Compare(first=f, rest=r):
            return (f, *r)
    return ()


def too_deep(tree: Node) -> Node | None:
    """A node deeper than MAX_DEPTH (left-leaning chains like ``1+1+...+1`` included), without recursion."""
    todo = [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            return node
        todo.extend((c, depth + 1) for c in children(node))
    return None


def names(node: Node) -> set[str]:
    match node:
        case Name(name=n):
            return {n}
        case Attr(target=t):
            return names(t)
        case Index(target=t, index=i):
            return names(t) | names(i)
        case ListExpr(items=items) | BoolOp(operands=items) | Call(args=items):
            return set().union(*(names(x) for x in items)) if items else set()
        case Unary(operand=o):
            return names(o)
        case BinOp(left=a, right=b):
            return names(a) | names(b)
        case Compare(first=f, rest=r):
            return names(f).union(*(names(x) for x in r))
    return set()


def canonical(node: Node) -> str:  # noqa: C901 -- one case per node type (a match over the closed node set)
    match node:
        case Const(value=v):
            if v is None or isinstance(v, (bool, str)):
                return json.dumps(v, ensure_ascii=False)
            return repr(v)
        case Name(name=n):
            return n
        case Attr(target=t, attr=a):
            return f"{canonical(t)}.{a}"
        case Index(target=t, index=i):
            return f"{canonical(t)}[{canonical(i)}]"
        case ListExpr(items=items):
            return "[" + ",".join(canonical(x) for x in items) + "]"
        case Unary(op=op, operand=o):
            return f"({op} {canonical(o)})"
        case BinOp(op=op, left=a, right=b):
            return f"({canonical(a)} {op} {canonical(b)})"
        case BoolOp(op=op, operands=items):
            return "(" + f" {op} ".join(canonical(x) for x in items) + ")"
        case Compare(first=f, ops=ops, rest=rest):
            return "(" + canonical(f) + "".join(f" {op} {canonical(r)}" for op, r in zip(ops, rest, strict=True)) + ")"
        case Call(func=fn, args=args):
            return f"{fn}(" + ",".join(canonical(x) for x in args) + ")"
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def name_nodes(node: Node) -> list[tuple[str, int]]:
    match node:
        case Name(name=n):
            return [(n, node.pos)]
        case Attr(target=t):
            return name_nodes(t)
        case Index(target=t, index=i):
            return name_nodes(t) + name_nodes(i)
        case ListExpr(items=items) | BoolOp(operands=items) | Call(args=items):
            return [x for item in items for x in name_nodes(item)]
        case Unary(operand=o):
            return name_nodes(o)
        case BinOp(left=a, right=b):
            return name_nodes(a) + name_nodes(b)
        case Compare(first=f, rest=r):
            return name_nodes(f) + [x for item in r for x in name_nodes(item)]
    return []
