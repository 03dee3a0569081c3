"""Research at cluster scale: parameter sweeps and walk-forward optimisation, run on Ray.

`evaluate.py` (the evaluator contract and its in-process implementation) and `space.py` are pure;
the Ray runners import Ray only inside the functions that need it, so the CLI can import them.
"""
