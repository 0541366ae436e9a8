"""The layers of lth-sweep, bottom first: a module imports from its own layer and those below it,
never from one above (checked over every module by tests/unit/test_layers.py; ARCHITECTURE.md).

  trainables    specs, data, models, pruning, training a lineage, and the record it leaves in
                MLflow (no Ray driver, no analysis)
  analysis      what a round is measured on, the metric registry, reading a sweep back, verdicts
  export        tickets people take away: a round read back, written as a file or registered
  orchestrator  the driver and the CLI: config, plan, Ray, Tune, MLflow runs, the summary
  api           `import lth_sweep`: the functions a notebook calls
"""
LAYERS = ("trainables", "analysis", "export", "orchestrator", "api")
