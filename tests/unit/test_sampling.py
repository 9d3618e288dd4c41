import torch
from torch.utils.data import DataLoader, Dataset

from edgecomp.data.detection.detection_datamodule import DetectionDataModule
from edgecomp.data.detection.index import DetectionIndex
from edgecomp.data.sampling import EpochShuffleSampler, SeededSamples, held_out_indices


class RandomItems(Dataset):
    """Item i is (i, a random draw): the draw stands for a random augmentation."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return i, torch.rand(()).item()


def epoch_batches(epoch, seed=3, fresh=True, num_workers=0):
    sampler = EpochShuffleSampler(10, seed, epoch=0 if not fresh else epoch)
    if not fresh:
        for e in range(epoch):  # a long-running process: earlier epochs consumed generators
            sampler.set_epoch(e)
            list(DataLoader(SeededSamples(RandomItems()), batch_size=4, sampler=sampler))
            torch.rand(100)
        sampler.set_epoch(epoch)
    loader = DataLoader(SeededSamples(RandomItems()), batch_size=4, sampler=sampler, num_workers=num_workers)
    return [(ids.tolist(), draws.tolist()) for ids, draws in loader]


def test_an_epoch_is_the_same_fresh_or_after_earlier_epochs():
    assert epoch_batches(3, fresh=True) == epoch_batches(3, fresh=False)


def test_worker_processes_give_the_same_samples():
    assert epoch_batches(2, num_workers=2) == epoch_batches(2, num_workers=0)


def test_epochs_and_seeds_shuffle_differently_and_cover_every_item():
    orders = {tuple(i for ids, _ in epoch_batches(e, seed=s) for i in ids) for e in range(3) for s in range(2)}
    assert len(orders) == 6
    assert all(sorted(order) == list(range(10)) for order in orders)


def test_loading_a_sample_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    SeededSamples(RandomItems())[(4, 123)]
    assert torch.equal(torch.rand(3), expected)


def test_held_out_images_are_apart_from_the_calibration_draw_while_both_fit():
    size, seed = 50, 7
    calibration = set(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:20].tolist())
    held_out = held_out_indices(size, 30, seed)
    assert len(set(held_out)) == 30 and not calibration & set(held_out)
    assert held_out_indices(size, 30, seed) == held_out  # drawn by the seed alone
    assert set(held_out_indices(size, 60, seed)) == set(range(size))  # more than the split: all of it


def test_a_held_out_detection_split_carries_the_ground_truth_of_its_training_images():
    index = DetectionIndex(categories=[{"id": 3, "name": "a"}, {"id": 5, "name": "b"}])
    for image_id in range(10):
        index.images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 64, "height": 64})
        index.add_box(image_id, 3 if image_id % 2 else 5, 1, 1, 10, 10)
    module = DetectionDataModule(lambda split: index, {"train": "train", "val": "val"}, num_classes=2, image_size=32)
    held = module.held_out(4)
    assert module.eval_split == "val" and held.eval_split == "train (held out)"
    ids = {image["id"] for image in held.eval_index.images}
    assert len(ids) == 4 and {a["image_id"] for a in held.eval_index.annotations} == ids
    assert held.category_ids == module.category_ids == [3, 5]
    assert module.eval_index is not held.eval_index  # the original keeps its evaluation split


def test_ddp_ranks_batches_of_half_size_make_up_the_one_process_batches():
    """Under trainer=ddp Lightning shards the training loader's sampler across the ranks (its own wrapper, as it
    does in a run): with half the batch size each, step k of the two ranks together draws exactly the samples, and
    the per-sample seeds (the augmentation), of step k of one process, in every epoch."""
    from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
    from lightning.pytorch.utilities.data import _is_dataloader_shuffled

    from edgecomp.data.sampling import seeded_train_loader

    dataset = list(range(40))
    for epoch in (0, 1, 2):
        single = seeded_train_loader(dataset, batch_size=8, num_workers=0, seed=3).sampler
        single.set_epoch(epoch)
        one_process = [sorted(batch) for batch in _chunks(list(single), 8)]
        ranks = []
        for rank in (0, 1):
            loader = seeded_train_loader(dataset, batch_size=4, num_workers=0, seed=3)
            sharded = _get_distributed_sampler(
                loader, _is_dataloader_shuffled(loader), overfit_batches=0, num_replicas=2, rank=rank
            )
            sharded.set_epoch(epoch)
            ranks.append(_chunks(list(sharded), 4))
        assert [sorted(a + b) for a, b in zip(*ranks, strict=True)] == one_process
        assert set(ranks[0][0]).isdisjoint(ranks[1][0])


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]
