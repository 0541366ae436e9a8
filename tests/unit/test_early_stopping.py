"""The early-stopping measure (Frankle & Carbin): saturation, a validation split that is neither
test nor train, test accuracy at the selected iteration, and the dense trunk's own value."""
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support.tiny import tiny_lineage
from lth_sweep.trainables.data import load_dataset
from lth_sweep.trainables.early_stopping import ValidationTracker, validation_split
from lth_sweep.trainables.lineage import run_lineage
from lth_sweep.trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec
from lth_sweep.trainables.training import evaluate, train
from lth_sweep.trainables.trunk import build_for, cached_dataset, train_trunk

EVERY = 4


def overfitting_trunk() -> TrunkSpec:
    """128 training images for 30 epochs: the validation loss turns up well before the end."""
    return TrunkSpec(
        data=DataSpec(image_size=16, train_size=128, test_size=128, ood_size=0, validation_size=64),
        model=ModelSpec(name="conv2", width=4),
        train=TrainSpec(epochs=30, batch_size=32, lr=0.01),
        seed=0,
    )


def tracked(losses: list[float]) -> dict[str, float]:
    tracker = ValidationTracker(model=None, split=None, every=100)
    tracker.history = [(100 * (i + 1), loss, 0.5) for i, loss in enumerate(losses)]
    return tracker.metrics()


def test_a_minimum_at_the_first_or_last_evaluation_is_saturated_and_has_no_iteration():
    falling = tracked([2.0, 1.5, 1.2, 1.0, 0.9])  # still falling when training ended (the quickstart's case)
    assert falling["train/early_stop_saturated"] == 1 and "train/early_stop_iteration" not in falling
    rising = tracked([0.5, 0.7, 0.9])
    assert rising["train/early_stop_saturated"] == 1 and "train/early_stop_iteration" not in rising
    assert tracked([1.0])["train/early_stop_saturated"] == 1
    inside = tracked([2.0, 1.0, 1.5])
    assert inside == {"train/early_stop_saturated": 0.0, "train/early_stop_iteration": 200.0, "train/early_stop_every": 100.0}


def image_bytes(split) -> set[bytes]:
    return {image.numpy().tobytes() for image in split.images}


@pytest.mark.parametrize("name", ["shapes", "digits"])
def test_validation_images_are_neither_test_nor_training_images(name):
    plain = DataSpec(name=name, image_size=8 if name == "digits" else 16, train_size=600, test_size=200, ood_size=0)
    spec = plain.model_copy(update={"validation_size": 50})
    dataset, without = load_dataset(spec), load_dataset(plain)
    validation = image_bytes(dataset.validation)
    assert len(validation) == len(dataset.validation) > 0
    assert not validation & image_bytes(dataset.test) and not validation & image_bytes(dataset.train)
    assert torch.equal(dataset.test.images, without.test.images)
    assert torch.equal(load_dataset(spec).validation.images, dataset.validation.images)  # fixed by the data seed
    if name == "shapes":  # generated apart: training and the trunk's id are untouched
        assert len(dataset.validation) == 50 and torch.equal(dataset.train.images, without.train.images)
        assert spec.id == plain.id
    else:  # held out of train: min(50, 10% of train) images, no longer trained on, so a new id
        assert len(dataset.validation) == 50 and len(dataset.train) == len(without.train) - 50
        assert image_bytes(dataset.train) | validation == image_bytes(without.train)
        assert spec.id != plain.id


def test_early_stopping_never_falls_back_to_the_test_split(trained_trunk):
    dataset = cached_dataset(tiny_lineage().trunk.data)
    assert dataset.validation is None
    with pytest.raises(ValueError, match="validation_size"):
        validation_split(dataset)
    assert trained_trunk.spec == tiny_lineage().trunk
    with pytest.raises(ValueError, match="validation_size"):
        run_lineage(tiny_lineage(rounds=1), trained_trunk, validation_every=EVERY)


@pytest.fixture(scope="module")
def overfit():
    return train_trunk(overfitting_trunk(), validation_every=EVERY)


def test_the_trunk_measures_its_early_stopping_iteration_and_the_test_accuracy_there(overfit):
    spec = overfitting_trunk()
    metrics = overfit.metrics
    assert metrics["train/early_stop_saturated"] == 0
    best = int(metrics["train/early_stop_iteration"])
    assert best % EVERY == 0 and 0 < best < spec.total_iterations()
    dataset = cached_dataset(spec.data)
    torch.manual_seed(spec.seed)
    model = build_for(spec, dataset)
    train(model, dataset.train, spec.train, seed=spec.seed, stop_iteration=best)
    assert metrics["train/early_stop_acc"] == evaluate(model, dataset.test)["acc"]  # test, not validation
    assert metrics["test/acc"] != metrics["train/early_stop_acc"]  # the final network is another one


def test_the_trunk_logs_its_early_stopping_iteration_read_back_as_a_dense_column(overfit, mlflow_store):
    from lth_sweep.analysis.query import load_sweep
    from lth_sweep.orchestrator.mlflow_runs import SweepTracker
    from lth_sweep.orchestrator.trunk_sharing import _log_trunk

    uri = mlflow_store
    tracker = SweepTracker(uri, "early-stopping", "es", "sweep0")
    trunk_run = tracker.child("trunk", overfit.spec, "trunk").info.run_id
    _log_trunk(tracker, trunk_run, overfit)
    history = MlflowClient(uri).get_metric_history(trunk_run, "train/early_stop_iteration")
    assert [(m.step, m.value) for m in history] == [(0, overfit.metrics["train/early_stop_iteration"])]
    lineage = LineageSpec(trunk=overfit.spec, pruning={"method": "imp", "rate": 0.5, "rounds": 1})
    lineage_run = tracker.child("lineage", lineage, "imp", tags={"lth.trunk": overfit.spec.id}).info.run_id
    tracker.log_missing_metrics(lineage_run, {("sparsity", 1): 0.5})
    frame = load_sweep("es", uri, "early-stopping")
    assert frame["dense/train/early_stop_iteration"].tolist() == [overfit.metrics["train/early_stop_iteration"]]
    assert frame["dense/train/early_stop_saturated"].tolist() == [0.0]
