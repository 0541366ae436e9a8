"""The driver side: CLI, config, Ray connection, trunks, the Tuner, MLflow parent run, summary."""
