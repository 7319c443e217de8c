"""``logit-adj``: logit adjustment (Menon et al., ICLR 2021, "Long-tail learning via logit
adjustment": the logit-adjusted softmax cross-entropy, which adds tau log pi_y to each logit
during training) in a multi-label form. Each class is its own binary problem (positive vs
negative, priors pi_k and 1 - pi_k), and the softmax over its two adjusted logits
(x + tau log pi_k, tau log(1 - pi_k)) is a sigmoid of x + tau log(pi_k / (1 - pi_k)), so

    loss = mean over the batch's (i, k) of  BCE( x_ik + tau log(pi_k / (1 - pi_k)),  y_ik )

with pi_k = n_k / N_real the class's prior on the real train split and tau = 1 (the paper's
default). The offset is added during training only; the network's raw logits are what it
predicts with (the paper's loss form, not its post-hoc correction of a trained network).

A per-class constant moves no image's rank within its class, so average precision is blind
to a post-hoc shift: this method can change a class's AP only through what the adjusted loss
teaches the network (for a rare class, its positives' gradients stay large for longer).
"""

import torch
import torch.nn.functional as F

from ltbench.eval.training import TrainingMethod, class_counts, register_training_method


@register_training_method
class LogitAdjustment(TrainingMethod):
    name = "logit-adj"

    def __init__(self, tau: float = 1.0):
        if tau < 0:
            raise ValueError(f"logit-adj: tau must be >= 0, got {tau}")
        self.tau = tau

    def fit(self, y_real):
        pos, n = class_counts(y_real, self.name)
        prior = pos / n
        self.offset_ = (self.tau * torch.log(prior / (1 - prior))).float()  # float[K]
        return self

    def loss(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits + self.offset_.to(logits.device, logits.dtype), targets)
