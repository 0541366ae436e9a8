"""Winning tickets people can take away: a lineage's round, read back from MLflow, written as a
file that runs without lth-sweep (`lth export`). A layer of its own, above analysis (it judges
which round wins) and below the orchestrator (the CLI): `tests/unit/test_layers.py`.

One job per module:
  request        what to export, judged (format, sweep, label, seed, round, --slim) before torch loads
  lineage_run    which lineage run (sweep, label, seed) and which round (K, or the winning one)
  round_tensors  the round's weights and masks, downloaded from the run
  network        the lineage's model rebuilt from its spec, with the round's weights loaded
  standalone     the architecture's own source, made self-contained (model.py)
  ticket_loader  the loader shipped next to the weights (load_ticket.py): torch + safetensors only,
                 with `preprocess`, raw uint8 pixels made the network's input as the data pipeline makes them
  slim           filter/channel-in tickets made physically smaller (torch_pruning surgery)
  metadata       what every export says about itself
  formats        safetensors + loader, TorchScript, ONNX
  output         writing to a temporary folder, then one rename; the destination's name checked
  export         all of it, for `lth export` (orchestrator/cli_export.py)

Each round's ticket is stored packed by the trial (`trainables/ticket_packing.py`: part of the
record, not of export); everything here loads only when exporting, and torch only once request,
lineage_run and output have found nothing wrong.
"""
