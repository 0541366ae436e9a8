"""Post-hoc concept bottleneck models on a really trained network of the built-in shapes dataset,
whose classes are defined by known concepts (shape x colour)."""
import json

import numpy as np
import open_clip
import pytest
import torch

from lth_sweep.analysis.clip_bank import clip_text_bank, image_embeddings
from lth_sweep.analysis.concepts import (
    PCBM,
    concept_table,
    consistency,
    embeddings,
    fit_pcbm,
    learn_bank,
    project,
    recovered_classes,
    recovery,
    recovery_margin,
    recovery_margins,
    top_concepts,
)
from lth_sweep.trainables.data import load_dataset
from lth_sweep.trainables.data.shapes import COLOURS, SHAPES
from lth_sweep.trainables.models import build_model
from lth_sweep.trainables.specs import DataSpec, ModelSpec, TrainSpec
from lth_sweep.trainables.training import evaluate, train

# The concept analysis reads the test split: the first FIT examples fit the bank and the PCBM, the
# rest are held out.
FIT = 1000
pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread: tests/unit/conftest.py


@pytest.fixture(scope="module")
def shapes():
    return load_dataset(DataSpec(image_size=16, train_size=3000, test_size=1500, ood_size=0))


def new_model(shapes):
    return build_model(ModelSpec(name="conv4", width=8), in_channels=3, image_size=16, num_classes=shapes.num_classes)


@pytest.fixture(scope="module")
def trained(shapes):
    torch.manual_seed(0)
    model = new_model(shapes)
    train(model, shapes.train, TrainSpec(epochs=5, batch_size=32, lr=3e-3), seed=0)
    assert evaluate(model, shapes.test)["acc"] > 0.85  # measured 0.945
    return model


@pytest.fixture(scope="module")
def shuffled(shapes, trained):
    """The trained network with every parameter tensor's entries permuted: same weight statistics,
    no learnt structure."""
    model = new_model(shapes)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param, source in zip(model.parameters(), trained.parameters()):
            flat = source.flatten()
            param.copy_(flat[torch.randperm(flat.numel(), generator=generator)].view_as(param))
    return model


def analyse(model, shapes, seed=0, concepts=None):
    data = shapes.test
    concepts = data.concepts.numpy() if concepts is None else concepts
    labels = data.labels.numpy()
    emb = embeddings(model, data.images)
    bank = learn_bank(emb[:FIT], concepts[:FIT], shapes.concept_names, emb[FIT:], concepts[FIT:], seed=seed)
    proj = project(emb, bank)
    pcbm = fit_pcbm(proj[:FIT], labels[:FIT], proj[FIT:], labels[FIT:], concept_names=bank.names, seed=seed)
    return bank, pcbm


@pytest.fixture(scope="module")
def dense(trained, shapes):
    return analyse(trained, shapes)


@pytest.fixture(scope="module")
def random_structure(shuffled, shapes):
    return analyse(shuffled, shapes)


def test_embeddings_are_the_penultimate_layer_and_restore_the_training_mode(trained, shapes):
    images = shapes.test.images[:10]
    trained.train()
    emb = embeddings(trained, images, batch_size=4)
    assert trained.training
    assert emb.shape == (10, trained.fc.in_features)
    with torch.no_grad():
        np.testing.assert_allclose(trained.fc(torch.from_numpy(emb)), trained.eval()(images), atol=1e-5)
    trained.train()


def test_concept_vectors_learn_the_true_concepts(dense, shapes):
    bank, _ = dense
    assert bank.names == shapes.concept_names and bank.skipped == []
    np.testing.assert_allclose(np.linalg.norm(bank.vectors, axis=1), 1.0)
    accuracy = dict(zip(bank.names, bank.balanced_accuracies))
    # Measured: circle 0.92, square 0.96, triangle 1.0; red, green, blue 1.0 (held-out, balanced).
    assert min(accuracy[name] for name in SHAPES) > 0.85
    assert min(accuracy[name] for name in COLOURS) > 0.95
    # Texture is irrelevant by construction and the network learns not to see it (measured 0.50-0.55).
    assert max(accuracy[name] for name in ("stripes", "dots", "noise")) < 0.7


def test_pcbm_is_accurate_and_finds_the_defining_concepts(dense, shapes):
    _, pcbm = dense
    assert pcbm.accuracy > 0.85  # measured 0.934; the network itself: 0.923
    assert (pcbm.weights == 0).mean() > 0.5  # sparse: measured 74% zeros
    # Measured 8/9: every class's top-2 concepts are its shape and its colour, but green triangle's
    # (it leans on "not square"). Recovery moves in steps of 1/9, so the margin (continuous) carries
    # the claim: trained networks 0.52-0.88 over 20 seed settings, shuffled ones at most 0.36.
    assert recovery(pcbm, shapes.concept_names, shapes.class_concepts) >= 7 / 9
    assert recovery_margin(pcbm, shapes.concept_names, shapes.class_concepts) > 0.4  # measured 0.63
    as_names = [[shapes.concept_names[i] for i in c] for c in shapes.class_concepts]
    assert recovered_classes(pcbm, shapes.concept_names, as_names) == recovered_classes(
        pcbm, shapes.concept_names, shapes.class_concepts
    )


def dense_projections(trained, shapes, bank):
    proj = project(embeddings(trained, shapes.test.images), bank)
    labels = shapes.test.labels.numpy()
    return proj[:FIT], labels[:FIT], proj[FIT:], labels[FIT:]


@pytest.mark.filterwarnings("error")  # the old dense fit warned (UserWarning), the deprecated `penalty` would too
def test_pcbm_is_an_elastic_net_on_the_installed_scikit_learn(trained, dense, shapes):
    """Before scikit-learn 1.8, `l1_ratio` without penalty="elasticnet" silently fitted a dense L2 model."""
    bank, _ = dense
    split = dense_projections(trained, shapes, bank)
    zeros = {
        l1_ratio: (fit_pcbm(*split, concept_names=bank.names, l1_ratio=l1_ratio).weights == 0).mean()
        for l1_ratio in (0.0, 0.9, 1.0)
    }
    # Measured: 0% zeros for pure L2, 74% at the default 0.9, 75% for pure L1.
    assert zeros[0.0] == 0
    assert zeros[0.9] > 0.5 and zeros[1.0] >= zeros[0.9]


def test_recovery_margin_is_positive_exactly_for_recovered_classes():
    names = ["a", "b", "c", "d"]
    pcbm = PCBM(
        concept_names=["a", "b", "c"],  # "d" skipped by the bank
        classes=np.array([0, 1, 2, 3]),
        weights=np.array([[2.0, 1.0, 0.5], [2.0, 0.0, -1.0], [-1.0, -2.0, -0.5], [0.0, 0.0, 0.0]]),
        bias=np.zeros(4),
        mean=np.zeros(3),
        scale=np.ones(3),
        accuracy=1.0,
    )
    truths = [["a", "b"], ["a", "b"], ["a", "b"], [0], ["a", "d"]]  # class 4: never seen
    # (1 - 0.5) / 2; (0 - 0) / 2; (-2 - 0) / 2; all-zero row; unseen class
    assert recovery_margins(pcbm, names, truths) == [0.25, 0.0, -1.0, 0.0, 0.0]
    assert recovered_classes(pcbm, names, truths) == [True, False, False, False, False]
    assert recovery_margin(pcbm, names, truths) == pytest.approx(-0.75 / 5)
    assert recovery_margins(pcbm, names, [["c"], ["d"]]) == [-0.75, -1.0]  # "d" weighs 0, "a" leads


def test_a_network_compared_with_itself_is_perfectly_consistent(dense, shapes):
    _, pcbm = dense
    scores = consistency(pcbm, pcbm, shapes.concept_names, k=3)
    assert scores["jaccard"] == [1.0] * 9 and scores["kendall_tau"] == [1.0] * 9
    assert scores["mean_jaccard"] == 1.0 and scores["mean_kendall_tau"] == 1.0


def test_a_network_without_learnt_structure_loses_the_concepts(random_structure, shapes):
    bank, pcbm = random_structure
    # Colour survives random weights (a pixel-wise property); shape, which needs learnt filters, does
    # not. Measured over 20 (data, training, shuffle) seeds: shape CAVs at most 0.68 balanced accuracy
    # (trained: 0.85-0.97 wherever the network passes its 0.85 check), PCBM accuracy 0.29-0.42 (colour
    # alone gives 1/3). Here: 0.64 and 0.36.
    accuracy = dict(zip(bank.names, bank.balanced_accuracies))
    assert max(accuracy[name] for name in SHAPES) < 0.75
    assert pcbm.accuracy < 0.6
    # The sparse PCBM still ranks the weak shape concepts first, so `recovery` (steps of 1/9) does not
    # tell this network from a trained one (same seeds: shuffled 0.44-0.89, trained 0.67-1.0), nor do
    # top-3 Jaccard and tau against the trained PCBM (shuffled 0.63-0.91 and 0.61-0.80; two trained
    # seeds 0.81-0.93 and 0.75-0.86). How far the true concepts lead does: shuffled 0.01-0.30 (0.36
    # under a parent at 74% accuracy), trained 0.52-0.88 wherever its PCBM is over 90% accurate.
    # Here: 0.15 (trained 0.63).
    assert recovery_margin(pcbm, shapes.concept_names, shapes.class_concepts) < 0.4


def test_same_seed_gives_the_identical_bank_and_pcbm(trained, dense, shapes):
    bank, pcbm = dense
    again_bank, again_pcbm = analyse(trained, shapes)
    for field in ("vectors", "mean", "scale", "accuracies", "balanced_accuracies"):
        assert np.array_equal(getattr(bank, field), getattr(again_bank, field), equal_nan=True)
    for field in ("weights", "bias", "mean", "scale", "classes"):
        assert np.array_equal(getattr(pcbm, field), getattr(again_pcbm, field))
    assert pcbm.accuracy == again_pcbm.accuracy


def test_concepts_without_positives_are_skipped_and_comparisons_use_the_shared_ones(trained, dense, shapes):
    _, reference = dense
    concepts = shapes.test.concepts.numpy().copy()
    dots = shapes.concept_names.index("dots")
    concepts[:, dots] = False
    bank, pcbm = analyse(trained, shapes, concepts=concepts)
    assert bank.skipped == ["dots"] and "dots" not in bank.names
    assert bank.vectors.shape == (len(shapes.concept_names) - 1, trained.fc.in_features)
    assert pcbm.weights.shape == (9, len(bank.names))
    scores = consistency(reference, pcbm, shapes.concept_names, k=3)
    assert scores["concepts"] == bank.names
    table = concept_table(reference, pcbm, shapes.class_names, shapes.concept_names, k=3)
    assert not table["reference_top3"].str.contains("dots").any()


def test_concept_table_shows_each_class_side_by_side(dense, random_structure, shapes):
    _, reference = dense
    _, other = random_structure
    table = concept_table(reference, other, shapes.class_names, shapes.concept_names, k=3)
    assert list(table.columns) == ["class", "reference_top3", "top3", "jaccard_top3", "kendall_tau"]
    assert list(table["class"]) == shapes.class_names
    first = table.iloc[0]  # "red circle"
    assert set(first["reference_top3"].split(", ")[:2]) == {"circle", "red"}
    scores = consistency(reference, other, shapes.concept_names, k=3)
    assert list(table["jaccard_top3"]) == scores["jaccard"]
    assert table.to_csv(index=False)  # what becomes the MLflow artifact


def test_top_concepts_break_ties_by_vocabulary_order_and_keep_only_positive_weights():
    names = ["a", "b", "c", "d"]
    pcbm = PCBM(
        concept_names=["d", "c", "b"],  # a bank that skipped "a"; order differs from the vocabulary
        classes=np.array([0, 1]),
        weights=np.array([[0.5, 0.5, 0.5], [0.0, 2.0, -1.0]]),
        bias=np.zeros(2),
        mean=np.zeros(3),
        scale=np.ones(3),
        accuracy=1.0,
    )
    assert top_concepts(pcbm, names, 2) == [["b", "c"], ["c"]]
    assert recovered_classes(pcbm, names, [["b", "c"], [2]]) == [True, True]
    assert recovered_classes(pcbm, names, [["c", "d"], ["c"], ["a"]]) == [False, True, False]


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "head_width": 16, "patch_size": 4},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory):
    path = tmp_path_factory.mktemp("open_clip") / "lth-test-tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(path)
    return path.stem


def test_clip_text_bank_end_to_end(tiny_clip_name, shapes):
    torch.manual_seed(0)
    model, tokenizer = open_clip.create_model(tiny_clip_name).eval(), open_clip.get_tokenizer(tiny_clip_name)
    bank = clip_text_bank(model, tokenizer, shapes.concept_names)
    assert bank.names == shapes.concept_names and bank.vectors.shape == (len(shapes.concept_names), 16)
    np.testing.assert_allclose(np.linalg.norm(bank.vectors, axis=1), 1.0)
    data, labels = shapes.test, shapes.test.labels.numpy()[:600]
    proj = project(image_embeddings(model, data.images[:600]), bank)
    assert proj.shape == (600, len(bank.names)) and np.abs(proj).max() <= 1 + 1e-9  # cosines
    pcbm = fit_pcbm(proj[:400], labels[:400], proj[400:], labels[400:], concept_names=bank.names)
    assert pcbm.weights.shape == (9, len(bank.names))
    # Random weights, yet colour survives a random ViT: measured 0.195 on 200 held-out (chance 0.11).
    assert pcbm.accuracy > 0.14
    assert len(top_concepts(pcbm, shapes.concept_names, 3)) == 9
