# The MLflow tracking server image: MLflow with its basic-auth app (mlflow[auth]), the PostgreSQL
# driver, and boto3 for an s3:// artifact destination. Build from the repository's root:
#
#   docker build -f deploy/mlflow.Dockerfile -t REGISTRY/lth-mlflow:3.17.2 .
#
# Keep the MLflow version equal to the one lth-sweep's image has: client and server share
# the REST API and the auth client.
FROM python:3.11-slim
ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir "mlflow[auth]==${MLFLOW_VERSION}" "psycopg2-binary>=2.9" "boto3>=1.34" \
    && useradd --create-home --uid 1000 mlflow
USER 1000
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow"]
