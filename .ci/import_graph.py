#!/usr/bin/env python3
"""The crate's module graph at the top level (src/X.rs or src/X/), from `use crate::`
and `crate::` paths in the code (tests excluded), and whether it has a cycle.

Usage: .ci/import_graph.py [--dot]   exit 1 if the graph has a cycle (printed).
"""
import os, re, sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

def top(path):
    rel = os.path.relpath(path, SRC)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first

def strip_tests(text):
    # Unit tests may use anything; the graph is the shipped code's.
    m = re.search(r"\n#\[cfg\(test\)\]\s*\nmod tests\b", text)
    return text[: m.start()] if m else text

def uses(text):
    out = set()
    text = re.sub(r"//[^\n]*", "", text)
    for m in re.finditer(r"\bcrate::([a-z_][a-z0-9_]*)", text):
        out.add(m.group(1))
    # `use crate::{a, b::c}`
    for m in re.finditer(r"use crate::\{([^;]*)\};", text, re.S):
        for part in re.split(r",", m.group(1)):
            name = part.strip().split("::")[0].strip("{} \n")
            if re.match(r"^[a-z_][a-z0-9_]*$", name):
                out.add(name)
    return out

modules = {}
for root, _, files in os.walk(SRC):
    for f in files:
        if f.endswith(".rs"):
            p = os.path.join(root, f)
            mod = top(p)
            if mod in ("lib", "main"):
                continue
            deps = uses(strip_tests(open(p).read()))
            modules.setdefault(mod, set()).update(d for d in deps if d != mod)
names = set(modules)
graph = {m: sorted(d for d in deps if d in names) for m, deps in modules.items()}

if "--dot" in sys.argv:
    print("digraph spindle {")
    for m in sorted(graph):
        for d in graph[m]:
            print(f"  {m} -> {d};")
    print("}")
    sys.exit(0)

# Tarjan's strongly connected components: any with more than one module is a cycle.
index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        sccs.append(comp)
sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index:
        visit(v)
cycles = [sorted(c) for c in sccs if len(c) > 1]
for m in sorted(graph):
    print(f"{m:10} -> {', '.join(graph[m]) or '-'}")
if cycles:
    for c in cycles:
        print("CYCLE among:", " ".join(c))
    sys.exit(1)
print("no cycle: the module graph is a DAG")
