import torch
from torch.utils.data import DataLoader, Dataset

from edgecomp.data.sampling import EpochShuffleSampler, SeededSamples


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
