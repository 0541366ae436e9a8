"""The ids that name trunks, lineages and analyses, pinned (as open_lth's test_desc pins its
hyperparameter descriptions): a change to a spec that changes an id fails here, so a new id is a
decision (old sweeps' runs are not found again), never an accident. Each identity rule declared
on a field (trainables/identity.py) has its row: a field out of the identity keeps the id, one in
it changes it."""
from __future__ import annotations

from lth_sweep.analysis.analysis_spec import AnalysisSpec
from lth_sweep.trainables.models import MODELS
from lth_sweep.trainables.pruning import PRUNING_METHODS
from lth_sweep.trainables.specs import DataSpec, LineageSpec, ModelSpec, TrainSpec, TrunkSpec

PINNED = {
    "trunk/lenet_300_100": "2bde7fdab40a",
    "trunk/conv2": "63830b02c5ef",
    "trunk/conv4": "7f681b257593",
    "trunk/conv6": "9f4283cabbf1",
    "trunk/resnet20": "aca4b1d05ff3",
    "trunk/resnet56": "5f3ffe60527b",
    "trunk/resnet18": "1734b3594da0",
    "trunk/resnet50": "cc5c74322245",
    "trunk/vgg16": "889fc35994ee",
    "trunk/vgg19": "d3bdcfab1adb",
    "trunk/wrn28_10": "4942298e0c59",
    "trunk/googlenet": "c0597d0f3363",
    "trunk/inception_v3": "646b7541fbad",
    "trunk/clip_vit_b32": "6a5b806c6bcc",
    "trunk/clip_rn50": "9c75c0251a30",
    "lineage/imp": "641249f37bdd",
    "lineage/omp": "982831831f16",
    "lineage/random": "8d4bed48a8ca",
    "lineage/snip": "cd3ede8d47ef",
    "lineage/grasp": "61df193e7387",
    "lineage/synflow": "9ebd27c681fd",
    "lineage/rigl": "2f9b6f3dbfc9",
    "lineage/filter": "ce92648db4ab",
    "lineage/channel_in": "108f53f33a19",
    "train.device=cuda": "7f681b257593",
    "train.workers=4": "7f681b257593",
    "train.precision=bf16": "ed3f6f57d239",
    "train.schedule=exponential": "2cc07ce5eebb",
    "data.validation_size=100": "7f681b257593",
    "pruning.name=mine": "641249f37bdd",
    "pruning.rewind=5": "1f4c992f8be6",
    "analysis": "bc2ebb0dbf32",
    "analysis.actors=3": "bc2ebb0dbf32",
    "analysis.gpus_per_actor=0.5": "bc2ebb0dbf32",
    "analysis.twin=false": "bc2ebb0dbf32",
    "analysis.flatness.bootstrap_draws=20": "24912cdfbe43",
    "data=digits": "6566ab5521dc",
    "data=digits,validation_size=100": "e551fc71f232",
}


def current_ids() -> dict[str, str]:
    def trunk(model="conv4", **train):
        return TrunkSpec(data=DataSpec(image_size=16, train_size=512, test_size=128), model=ModelSpec(name=model),
                         train=TrainSpec(**{"epochs": 2, **train}), seed=0)
    out = {}
    for name in MODELS:
        out[f"trunk/{name}"] = trunk(name).id
    for method in PRUNING_METHODS:
        out[f"lineage/{method}"] = LineageSpec(trunk=trunk(), pruning={"method": method, "rate": 0.2, "rounds": 3}).id
    variants = {
        "train.device=cuda": trunk(device="cuda").id, "train.workers=4": trunk(workers=4).id,
        "train.precision=bf16": trunk(precision="bf16").id, "train.schedule=exponential": trunk(schedule="exponential").id,
        "data.validation_size=100": TrunkSpec(data=DataSpec(image_size=16, train_size=512, test_size=128, validation_size=100), model=ModelSpec(name="conv4"), train=TrainSpec(epochs=2), seed=0).id,
        "data=digits": TrunkSpec(data=DataSpec(name="digits", image_size=8), model=ModelSpec(name="lenet_300_100"), train=TrainSpec(epochs=2), seed=0).id,
        "data=digits,validation_size=100": TrunkSpec(data=DataSpec(name="digits", image_size=8, validation_size=100), model=ModelSpec(name="lenet_300_100"), train=TrainSpec(epochs=2), seed=0).id,
        "pruning.name=mine": LineageSpec(trunk=trunk(), pruning={"method": "imp", "rate": 0.2, "rounds": 3, "name": "mine"}).id,
        "pruning.rewind=5": LineageSpec(trunk=trunk(), pruning={"method": "imp", "rate": 0.2, "rounds": 3, "rewind": 5}).id,
        "analysis": AnalysisSpec().id, "analysis.actors=3": AnalysisSpec(actors=3, cpus_per_actor=1).id,
        "analysis.gpus_per_actor=0.5": AnalysisSpec(gpus_per_actor=0.5).id, "analysis.twin=false": AnalysisSpec(twin=False).id,
        "analysis.flatness.bootstrap_draws=20": AnalysisSpec(flatness={"bootstrap_draws": 20}).id,
    }
    return {**out, **variants}


def test_every_model_s_trunk_and_every_method_s_lineage_keeps_its_id():
    assert {f"trunk/{name}" for name in MODELS} | {f"lineage/{name}" for name in PRUNING_METHODS} <= set(PINNED), (
        "a new model or method: pin its id here"
    )
    changed = {key: (PINNED[key], value) for key, value in current_ids().items() if PINNED.get(key) != value}
    assert not changed, f"ids changed (pinned, now): {changed}"


def test_what_is_out_of_the_identity_keeps_the_id_and_what_is_in_changes_it():
    same = ["train.device=cuda", "train.workers=4", "data.validation_size=100"]
    assert {PINNED[key] for key in same} == {PINNED["trunk/conv4"]}
    assert PINNED["train.precision=bf16"] != PINNED["trunk/conv4"] != PINNED["train.schedule=exponential"]
    assert PINNED["pruning.name=mine"] == PINNED["lineage/imp"] != PINNED["pruning.rewind=5"]
    assert PINNED["data=digits"] != PINNED["data=digits,validation_size=100"]
    out = ["analysis.actors=3", "analysis.gpus_per_actor=0.5", "analysis.twin=false"]
    assert {PINNED[key] for key in out} == {PINNED["analysis"]} != {PINNED["analysis.flatness.bootstrap_draws=20"]}


def test_a_spec_rebuilt_from_its_canonical_string_has_its_id():
    """What export does with a run's `lth.spec` param: the rebuilt spec is the run's, exactly."""
    def trunk(model="conv4", **train):
        return TrunkSpec(data=DataSpec(image_size=16, train_size=512, test_size=128, validation_size=100), model=ModelSpec(name=model),
                         train=TrainSpec(**{"epochs": 2, "device": "cuda", "precision": "bf16", **train}), seed=0)
    specs = [trunk(name) for name in MODELS] + [trunk(schedule="exponential", gamma=0.9)]
    specs += [LineageSpec(trunk=trunk(), pruning={"method": method, "rate": 0.2, "rounds": 3, "name": "x"}) for method in PRUNING_METHODS]
    for spec in specs:
        rebuilt = type(spec).model_validate_json(spec.canonical(), context={"check_paths": False})
        assert rebuilt.id == spec.id and rebuilt.canonical() == spec.canonical()
    analysis = AnalysisSpec(actors=4, gpus_per_actor=0.5, twin=False, flatness={"bootstrap_draws": 20})
    assert AnalysisSpec.model_validate_json(analysis.canonical()).id == analysis.id


def test_a_dimension_added_off_by_default_keeps_every_analysis_id():
    """ARCHITECTURE.md's recipe: a new dimension declared `omitted_while_off` leaves the analysis
    id (and so every analysed sweep's id) as it was while it is off, and changes it once on."""
    from pydantic import create_model

    from lth_sweep.analysis.analysis_spec import AnalysisSettings, dimension_field
    from lth_sweep.analysis.dimension import Cost, Dimension
    from lth_sweep.analysis.dimensions import DIMENSIONS
    from lth_sweep.trainables.canonical import Spec

    class ToySpec(Spec):
        enabled: bool = False
        images: int = 64

    toy = Dimension("toy", ToySpec, lambda net, dense, metrics: {}, (), (), Cost(1e9, 0.0, 0.0, lambda *_: (0.0, 0)),
                    omitted_while_off=True)
    fields = {name: dimension_field(name, dimension) for name, dimension in {**DIMENSIONS, "toy": toy}.items()}
    WithToy = create_model("WithToy", __base__=AnalysisSettings, **fields)
    assert WithToy().id == AnalysisSpec().id == PINNED["analysis"]
    assert WithToy(flatness={"bootstrap_draws": 20}).id == PINNED["analysis.flatness.bootstrap_draws=20"]
    assert WithToy(toy={"enabled": True}).id != PINNED["analysis"]
    same_without = {k: v for k, v in fields.items() if k != "toy"} | {"toy": (ToySpec, ToySpec())}  # the rule's work
    assert create_model("Plain", __base__=AnalysisSettings, **same_without)().id != PINNED["analysis"]
