"""RigL (Evci et al. 2020): the round's random mask, and the drop/grow updates during real training."""
import math

import pytest
import torch
from torch import nn

from tests.support.tiny import prune_context, shapes_model
from lth_sweep.trainables.data import ImageSplit
from lth_sweep.trainables.masks import MaskKeeper
from lth_sweep.trainables.pruning import rigl
from lth_sweep.trainables.pruning.densities import erk, kept_counts
from lth_sweep.trainables.specs import TrainSpec
from lth_sweep.trainables.training import train

TRAIN = TrainSpec(epochs=1, batch_size=16, lr=0.01)
STEPS = 16  # 256 examples / batch 16


def context(spec, round_index=2, seed=0, masks=None, total_iterations=STEPS):
    """The untrained tiny Conv-2 (torch seed `seed`) and 256 random images drawn right after it."""
    model = shapes_model(seed=seed)
    data = ImageSplit(images=torch.randn(256, 3, 16, 16), labels=torch.randint(0, 9, (256,)))
    ctx = prune_context(spec, model, round_index, masks=masks, data=data, seed=seed, total_iterations=total_iterations)
    return ctx, model


def counts(masks):
    return {n: int(m.sum()) for n, m in masks.items()}


class Checked:
    """Wraps the updater: at every update, counts stay, grown weights are 0, dropped ones inactive."""

    def __init__(self, updater, model, masks):
        self.updater, self.masks = updater, masks
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in masks}
        self.changed_steps = []

    def before_step(self):
        step, old = self.updater.step, {n: m.clone() for n, m in self.masks.items()}
        self.updater.before_step()
        assert counts(self.masks) == counts(old)
        for name, mask in self.masks.items():
            grown = mask & ~old[name]
            assert (self.params[name][grown] == 0).all()
        if any(not torch.equal(old[n], self.masks[n]) for n in old):
            self.changed_steps.append(step)

    def after_step(self):
        self.updater.after_step()


def train_rigl(seed=0, **options):
    spec = rigl.Spec(rate=0.5, rounds=2, update_interval=2, **options)
    ctx, model = context(spec, seed=seed)
    masks = rigl.next_masks(ctx)
    initial = {n: m.clone() for n, m in masks.items()}
    (updater,) = rigl.training_callbacks(ctx, model, masks)
    checked = Checked(updater, model, masks)
    train(model, ctx.data, TRAIN, seed=seed, callbacks=(checked, MaskKeeper(model, masks)))
    return model, initial, masks, updater, checked


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_next_masks_are_random_at_the_distributions_per_layer_counts_whatever_the_history(distribution):
    spec = rigl.Spec(rate=0.5, rounds=3, distribution=distribution)
    ctx, _ = context(spec, round_index=3)
    masks = rigl.next_masks(ctx)
    shapes = {n: m.shape for n, m in ctx.masks.items()}
    assert counts(masks) == kept_counts(shapes, 1 - ctx.target, distribution)
    total = sum(m.numel() for m in masks.values())
    assert 1 - sum(counts(masks).values()) / total == pytest.approx(ctx.target, abs=1e-3)
    history = {n: torch.rand(m.shape) < 0.3 for n, m in ctx.masks.items()}
    again = rigl.next_masks(context(spec, round_index=3, masks=history)[0])
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    other_seed = rigl.next_masks(context(spec, round_index=3, seed=1)[0])
    assert any(not torch.equal(masks[n], other_seed[n]) for n in masks)


@pytest.mark.parametrize("density", [0.05, 0.25, 0.5])
def test_erk_densities_sum_to_the_exact_budget(density):
    ctx, _ = context(rigl.Spec())
    shapes = {n: m.shape for n, m in ctx.masks.items()}
    densities = erk(shapes, density)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    assert sum(densities[n] * sizes[n] for n in shapes) == pytest.approx(density * sum(sizes.values()))
    assert all(0 < d <= 1 for d in densities.values())


def test_one_update_drops_the_smallest_actives_and_grows_the_largest_gradient_inactives():
    weight = torch.tensor([0.5, -0.1, 0.0, 0.9, 0.0, -0.2, 0.0, 0.0])
    mask = torch.tensor([True, True, False, True, False, True, False, False])
    grad = torch.tensor([9.0, 9.0, 0.3, 9.0, -0.8, 9.0, 0.1, -0.5])
    new, dropped, grown = rigl.update_layer(weight, grad, mask, 0.5)  # k = 2 of 4 active
    assert dropped.tolist() == [1, 5] and grown.tolist() == [4, 7]
    assert new.tolist() == [True, False, False, True, True, False, False, True]


def test_grow_is_among_weights_inactive_before_the_update():
    # The dropped weights have the largest gradients, yet are not regrown.
    weight = torch.tensor([0.1, 0.2, 0.0, 0.0])
    mask = torch.tensor([True, True, False, False])
    grad = torch.tensor([5.0, 4.0, 0.1, 0.2])
    new, _, grown = rigl.update_layer(weight, grad, mask, 1.0)
    assert sorted(grown.tolist()) == [2, 3] and new.tolist() == [False, False, True, True]


def test_the_updater_moves_the_mask_tensors_in_place_and_zeroes_grown_and_dropped_weights():
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.1, 0.7, 0.9], [3.0, -0.2, 0.4, 0.6]]))
    mask = torch.tensor([[True, True, False, True], [False, True, False, False]])
    masks = {"weight": mask}
    layer.weight.grad = torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.1, 0.0, -3.0, 0.5]])
    updater = rigl.RigLUpdater(layer, masks, total_steps=8, update_interval=1, drop_fraction=0.5, end_fraction=1.0)
    updater.step = 2  # alpha_2 = 0.25 (1 + cos(pi/4)) ~ 0.43: k = round(0.43 x 4) = 2
    updater.before_step()
    assert masks["weight"] is mask and updater.update_steps == [2]
    assert mask.tolist() == [[True, False, True, True], [False, False, True, False]]
    # grown (0,2) and (1,2) start at 0, dropped (0,1) and (1,1) are 0, the rest untouched
    assert torch.equal(layer.weight, torch.tensor([[0.5, 0.0, 0.0, 0.9], [3.0, 0.0, 0.0, 0.6]]))


def test_drop_fraction_decays_by_cosine_and_updates_stop_at_t_end():
    updater = rigl.RigLUpdater(nn.Linear(2, 2), {}, total_steps=100, update_interval=10, drop_fraction=0.3, end_fraction=0.75)
    assert updater.fraction_at(0) == pytest.approx(0.3)
    assert updater.fraction_at(37.5) == pytest.approx(0.15)
    assert updater.fraction_at(75) == pytest.approx(0.0)
    assert [t for t in range(100) if updater.is_update_step(t)] == [10, 20, 30, 40, 50, 60, 70]


def test_training_callbacks_count_the_retraining_steps_from_the_rewind_point():
    ctx, model = context(rigl.Spec(rewind=4))
    (updater,) = rigl.training_callbacks(ctx, model, rigl.next_masks(ctx))
    assert updater.total_steps == STEPS - 4
    ctx, model = context(rigl.Spec(), total_iterations=0)
    with pytest.raises(ValueError, match="total_iterations"):
        rigl.training_callbacks(ctx, model, rigl.next_masks(ctx))


def test_real_training_moves_masks_at_update_steps_only_keeping_counts_and_zeros():
    model, initial, masks, updater, checked = train_rigl()
    # 16 steps, T_end = 0.75 x 16 = 12: updates at 2, 4, ..., 10 and none after
    assert updater.update_steps == [2, 4, 6, 8, 10] and updater.step == STEPS
    assert checked.changed_steps == [2, 4, 6, 8, 10]
    assert counts(masks) == counts(initial)
    assert any(not torch.equal(masks[n], initial[n]) for n in masks)
    params = dict(model.named_parameters())
    assert all((params[n][~m] == 0).all() for n, m in masks.items())


def test_training_is_deterministic():
    _, _, first, _, _ = train_rigl(seed=3)
    _, _, second, _, _ = train_rigl(seed=3)
    assert all(torch.equal(first[n], second[n]) for n in first)


def test_label_names_a_non_default_distribution():
    assert rigl.Spec().label == "rigl"
    assert rigl.Spec(distribution="uniform").label == "rigl-uniform"
    with pytest.raises(ValueError):
        rigl.Spec(drop_fraction=1.0)
