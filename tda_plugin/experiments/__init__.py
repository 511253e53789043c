"""`tda eval`: the experiments of Choi et al. (ICML 2025) and Wang et al. (NeurIPS 2024) at small scale.

Each experiment returns a JSON-ready document; :mod:`.outputs` writes it as JSON, a Markdown table
and PNG plots. docs/evaluation.md has the results and the commands that produced them (docs/experiments/, each
experiment in full).
"""
