"""Everything that runs inside a trial: specs, data, models, pruning, training, the lineage."""
