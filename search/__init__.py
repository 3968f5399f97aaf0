"""Mixed-precision search (ILP, Pareto, baselines) over cost and sensitivity tables; see issue 4."""
