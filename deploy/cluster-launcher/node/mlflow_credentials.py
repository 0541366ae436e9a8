"""Writes the MLflow credentials of lth-sweep's user to ~/.mlflow/credentials (mode 600).

Run on every node of a cluster-launcher cluster (deploy/cluster-launcher/aws.yaml): it reads an
SSM SecureString parameter holding {"username": ..., "password": ...} with the instance's role,
so that neither the cluster YAML nor the sweep config ever holds the password. MLflow's client
reads the file when MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD are not set.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parameter", required=True, help="SSM parameter name, e.g. /lth-sweep/mlflow-sweep-user")
    parser.add_argument("--region", required=True)
    args = parser.parse_args()

    import boto3

    value = boto3.client("ssm", region_name=args.region).get_parameter(Name=args.parameter, WithDecryption=True)
    user = json.loads(value["Parameter"]["Value"])
    config = configparser.ConfigParser()
    config["mlflow"] = {"mlflow_tracking_username": user["username"], "mlflow_tracking_password": user["password"]}
    path = Path.home() / ".mlflow" / "credentials"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        config.write(handle)
    os.chmod(path, 0o600)
    print(f"MLflow credentials of {user['username']!r} written to {path}")


if __name__ == "__main__":
    main()
