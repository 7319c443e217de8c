"""``asl``: a class-weighted asymmetric loss (Ridnik et al., ICCV 2021, "Asymmetric Loss for
Multi-Label Classification"; the CXR-LT 2023 winner, CheXFusion, trained a class-weighted
ASL). The loss is timm's ``timm.loss.AsymmetricLossMultiLabel`` (its per-class ``weight``,
timm >= 1.0.31); this module only chooses the weights and hyper-parameters.

With p = sigmoid(x) and the shifted probability p_m = max(p - m, 0) (the paper's asymmetric
clipping, margin m), for class k:

    L+ = (1 - p)^gamma_pos log(p)            L- = p_m^gamma_neg log(1 - p_m)
    loss = mean over the batch's (i, k) of  -w_k [ y_ik L+ + (1 - y_ik) L- ]

Defaults are the paper's multi-label setting, gamma_pos = 0, gamma_neg = 4, m = 0.05 (timm's
own default gamma_pos = 1 is the authors' repository's). The class weights are ours (the paper
has none): tempered inverse frequency over the real train split, normalised to mean 1 so the
loss keeps its scale,

    w_k = (N_real / n_k)^power / mean_j (N_real / n_j)^power,   power = 0.5 by default.

The mean over elements (timm's ``reduction='mean'``) keeps BCE's scale; the paper sums.
"""


from ltbench.eval.training import TrainingMethod, class_counts, register_training_method


@register_training_method
class WeightedAsymmetricLoss(TrainingMethod):
    name = "asl"

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, power: float = 0.5, eps: float = 1e-8):
        if gamma_neg < 0 or gamma_pos < 0 or not 0 <= clip < 1 or power < 0:
            raise ValueError(f"asl: gamma_neg, gamma_pos, power >= 0 and clip in [0, 1) are required, got {gamma_neg}, {gamma_pos}, {power}, {clip}")
        self.gamma_neg, self.gamma_pos, self.clip, self.power, self.eps = gamma_neg, gamma_pos, clip, power, eps

    def fit(self, y_real):
        from timm.loss import AsymmetricLossMultiLabel

        pos, n = class_counts(y_real, self.name)
        w = (n / pos) ** self.power
        self.class_weight_ = (w / w.mean()).float()  # float[K]
        self.loss_fn_ = AsymmetricLossMultiLabel(gamma_neg=self.gamma_neg, gamma_pos=self.gamma_pos, clip=self.clip, eps=self.eps, reduction="mean", weight=self.class_weight_.clone())
        return self

    def loss(self, logits, targets):
        return self.loss_fn_.to(logits.device)(logits, targets)
