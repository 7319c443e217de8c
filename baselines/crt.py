"""``crt``: classifier re-training (Kang et al., ICLR 2020, "Decoupling representation and
classifier for long-tailed recognition", cRT). The representation is the one learned with
instance-balanced sampling, here the seed's warm start (``train_classifier(init=)``); the
final linear layer is re-initialised and ONLY it trains, for the row's steps, on
class-balanced batches, the rest of the network frozen (BatchNorm statistics included: the
representation is a fixed function of the image).

Class-balanced sampling in a multi-label pool: each batch slot draws a group uniformly, then
an image of that group uniformly,

    P(slot = image i) = (1 / G) sum over the groups g holding i of 1 / |g|,

the groups being the K classes (the images positive for each) and, as a group of its own,
the images with no positive label (so the re-trained layer still sees images negative for
every class, 1 / (K + 1) of the slots). The groups are taken over the whole pool (real and
generated rows alike; the harness's generated share does not apply). An image carrying
several labels can be drawn through each of them, so a class's share of slots is at least
1 / G, more where it co-occurs.

The re-initialisation is the layer's own (torch's ``nn.Linear``: weights uniform in
+-1/sqrt(fan_in), drawn from the seed; bias 0, as torchvision's DenseNet sets it).
"""

import math

import torch

from ltbench.eval.training import TrainingMethod, class_counts, register_training_method


@register_training_method
class ClassifierRetraining(TrainingMethod):
    name = "crt"
    needs_warm_start = True

    def __init__(self, reinit: bool = True):
        self.reinit = reinit

    def fit(self, y_real):
        class_counts(y_real, self.name)  # every class must have a positive to be balanced
        return self

    def batches(self, y, n_real, steps, batch_size, seed, share):
        pos = torch.as_tensor(y) > 0.5
        groups = [torch.nonzero(pos[:, k]).flatten() for k in range(pos.shape[1])]
        background = torch.nonzero(~pos.any(1)).flatten()
        groups += [background] if len(background) else []
        sizes = torch.tensor([len(g) for g in groups])
        if (sizes == 0).any():
            raise ValueError(f"crt: class(es) {torch.nonzero(sizes == 0).flatten().tolist()} have no image in the pool to balance")
        flat, start = torch.cat(groups), torch.cumsum(sizes, 0) - sizes
        gen = torch.Generator().manual_seed(seed + 1_000_003)

        def draw():
            for _ in range(steps):
                g = torch.randint(0, len(groups), (batch_size,), generator=gen)
                u = torch.rand(batch_size, generator=gen)
                yield flat[start[g] + torch.minimum((u * sizes[g]).long(), sizes[g] - 1)]

        return draw()

    def prepare(self, net, seed):
        head = getattr(net, "classifier", None)
        if not isinstance(head, torch.nn.Linear):
            raise ValueError(f"crt needs a network whose final layer `classifier` is an nn.Linear, got {type(head).__name__}")
        if self.reinit:
            g = torch.Generator().manual_seed(seed + 2_000_003)
            bound = 1 / math.sqrt(head.in_features)
            with torch.no_grad():
                head.weight.copy_(torch.empty(head.weight.shape).uniform_(-bound, bound, generator=g))
                head.bias.zero_()
        net.eval()  # the representation, BatchNorm's running statistics included, stays fixed
        head.train()
        for p in net.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
        return list(head.parameters())
