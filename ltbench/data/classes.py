"""Class lists and label statistics of the paper's benchmark (MIMIC-CXR-LT, 10-class subset).

Source: ``docs/method.md``: MIMIC-CXR-LT 2023 train counts of 264,849 images."""

HEAD_CLASSES = ("Atelectasis", "Cardiomegaly", "Edema", "Lung Opacity", "Pleural Effusion")
TAIL_CLASSES = (
    "Enlarged Cardiomediastinum",
    "Pneumothorax",
    "Fracture",
    "Tortuous Aorta",
    "Pneumomediastinum",
)
PAPER_CLASSES = HEAD_CLASSES + TAIL_CLASSES

MIMIC_CXR_LT_TRAIN_IMAGES = 264_849
MIMIC_CXR_LT_TRAIN_COUNTS = {
    "Atelectasis": 67_597,
    "Cardiomegaly": 76_900,
    "Edema": 38_574,
    "Lung Opacity": 79_931,
    "Pleural Effusion": 69_240,
    "Enlarged Cardiomediastinum": 30_119,
    "Pneumothorax": 14_983,
    "Fracture": 11_883,
    "Tortuous Aorta": 3_499,
    "Pneumomediastinum": 788,
}
TARGET_PREVALENCE = {k: v / MIMIC_CXR_LT_TRAIN_IMAGES for k, v in MIMIC_CXR_LT_TRAIN_COUNTS.items()}

# The 14 CheXpert labeler observations; MIMIC-CXR-LT (19 classes) adds five rarer findings and
# the CXR-LT 2023 challenge (26 classes) seven more.
CHEXPERT_14 = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
MIMIC_CXR_LT_19 = tuple(
    sorted(
        CHEXPERT_14
        + (
            "Calcification of the Aorta",
            "Pneumomediastinum",
            "Pneumoperitoneum",
            "Subcutaneous Emphysema",
            "Tortuous Aorta",
        )
    )
)
CXR_LT_2023_26 = tuple(
    sorted(
        MIMIC_CXR_LT_19
        + ("Emphysema", "Fibrosis", "Hernia", "Infiltration", "Mass", "Nodule", "Pleural Thickening")
    )
)

# CXR-LT 2024 (PhysioNet cxr-lt-iccv-workshop-cvamd v2.0.0, folder ``cxr-lt-2024``): 45 labels
# over MIMIC-CXR-JPG; task 1 scores 40 of them on a large test set with report-derived (noisy)
# labels, task 2 26 of those on a 406-image gold-standard subset annotated by radiologists, and
# task 3 five more zero-shot. "Normal" replaces CheXpert's "No Finding". In the release's order.
CXR_LT_2024_40 = (
    "Adenopathy", "Atelectasis", "Azygos Lobe", "Calcification of the Aorta", "Cardiomegaly", "Clavicle Fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged Cardiomediastinum", "Fibrosis", "Fissure", "Fracture", "Granuloma",
    "Hernia", "Hydropneumothorax", "Infarction", "Infiltration", "Kyphosis", "Lobar Atelectasis", "Lung Lesion",
    "Lung Opacity", "Mass", "Nodule", "Normal", "Pleural Effusion", "Pleural Other", "Pleural Thickening",
    "Pneumomediastinum", "Pneumonia", "Pneumoperitoneum", "Pneumothorax", "Pulmonary Embolism", "Pulmonary Hypertension",
    "Rib Fracture", "Round(ed) Atelectasis", "Subcutaneous Emphysema", "Support Devices", "Tortuous Aorta", "Tuberculosis",
)
CXR_LT_2024_GOLD_26 = (
    "Atelectasis", "Calcification of the Aorta", "Cardiomegaly", "Consolidation", "Edema", "Emphysema",
    "Enlarged Cardiomediastinum", "Fibrosis", "Fracture", "Hernia", "Infiltration", "Lung Lesion", "Lung Opacity", "Mass",
    "Normal", "Nodule", "Pleural Effusion", "Pleural Other", "Pleural Thickening", "Pneumomediastinum", "Pneumonia",
    "Pneumoperitoneum", "Pneumothorax", "Subcutaneous Emphysema", "Support Devices", "Tortuous Aorta",
)

