"""Benchmarks and reliability runs (docs/performance.md, docs/reliability.md), each a script: ``python bench/NAME.py``.

A package only so that the tests can import what they share with the benches (``bench.tiny_project``,
``bench.sink_result``, ``bench.query_trace``) without touching ``sys.path``; a script imports its sibling modules
by their bare names (its own folder is on the path), and the product only through the installed ``tda_plugin``.
"""
