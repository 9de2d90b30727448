"""The ground floor: the graph IR (values, nodes, blocks, graph, printer), its verifier, graph
analyses, and plain data several stages share (the preprocessing a manifest records).

Imports nothing of vcc but :mod:`vcc.errors`; every stage above imports it.
"""

from vcc.ir.graph import Block, Graph, Node, Shape, Value, format_graph

__all__ = ["Block", "Graph", "Node", "Shape", "Value", "format_graph"]
