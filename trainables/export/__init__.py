"""Winning tickets people can take away: a lineage's round, read back from MLflow, written as a
file that runs without lth-sweep (`lth export`).

One job per module:
  packing        a round's evaluated network and masks, stored compactly (kept values + packed bits)
  lineage_run    which lineage run (sweep, label, seed) and which round (K, or the winning one)
  round_tensors  the round's weights and masks, downloaded from the run
  network        the lineage's model rebuilt from its spec, with the round's weights loaded
  standalone     the architecture's own source, made self-contained (model.py)
  ticket_loader  the loader shipped next to the weights (load_ticket.py): torch + safetensors only
  slim           filter/channel-in tickets made physically smaller (torch_pruning surgery)
  metadata       what every export says about itself
  formats        safetensors + loader, TorchScript, ONNX
  output         writing to a temporary folder, then one rename
  export         all of it, for `lth export` (orchestrator/cli_export.py)

Nothing here is imported by training but `packing` (trainables/run_logger.py logs each round's
ticket with it); the rest loads only when exporting.
"""
