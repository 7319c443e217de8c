"""``wbce``: BCE with class-balanced positive weights, through torch's own ``pos_weight``
(``torch.nn.functional.binary_cross_entropy_with_logits``), the weighting torch's
documentation gives for it: negatives over positives per class.

With p = sigmoid(x), for class k of N_real real train images of which n_k are positive:

    w_k = ((N_real - n_k) / n_k) ** power
    loss = mean over the batch's (i, k) of  -[ w_k y_ik log p_ik + (1 - y_ik) log(1 - p_ik) ]

``power = 1`` (default): a class's positives weigh as much in total as its negatives;
``power < 1`` tempers the weights (0.5: their square root); ``power = 0`` is plain BCE.
"""

import torch.nn.functional as F

from ltbench.eval.training import TrainingMethod, class_counts, register_training_method


@register_training_method
class WeightedBCE(TrainingMethod):
    name = "wbce"

    def __init__(self, power: float = 1.0):
        if power < 0:
            raise ValueError(f"wbce: power must be >= 0, got {power}")
        self.power = power

    def fit(self, y_real):
        pos, n = class_counts(y_real, self.name)
        self.pos_weight_ = (((n - pos) / pos) ** self.power).float()  # float[K]
        return self

    def loss(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight_.to(logits.device, logits.dtype))
