"""The numbers the G4G paper publishes (arXiv 2402.18122; docs/design/paper-tables.md), kept as data.

Reconstruction setting, each video driven by its own audio. Methods and datasets use the keys of this
project's tables ('g4g', 'wav2lip', ..., 'hdtf', 'lrs2') so that published and measured rows line up;
`label` is the paper's own name. FID is named in the paper's Sec. 4.2 but has no column in Table 1.
"""

from __future__ import annotations

METRICS = ("PSNR", "SSIM", "LPIPS", "MSE", "LSE-D", "LSE-C")
LABELS = {"wav2lip": "Wav2Lip", "videoretalking": "VideoRetalking", "dinet": "DINet", "ip_lap": "IP_LAP",
          "g4g": "G4G"}

# Table 1: (method, dataset, PSNR, SSIM, LPIPS, MSE, LSE-D, LSE-C)
TABLE1 = [
    ("wav2lip", "hdtf", 27.9359, 0.8935, 0.1455, 0.0017, 7.0138, 8.3739),
    ("videoretalking", "hdtf", 23.8450, 0.8479, 0.1262, 0.0046, 7.2773, 7.5827),
    ("dinet", "hdtf", 23.7150, 0.8558, 0.1017, 0.0045, 8.0256, 7.0689),
    ("ip_lap", "hdtf", 27.9556, 0.9088, 0.0918, 0.0018, 8.2667, 6.3498),
    ("g4g", "hdtf", 27.5560, 0.9083, 0.0904, 0.0020, 7.8920, 7.3381),
    ("wav2lip", "lrs2", 28.4655, 0.8928, 0.1542, 0.0014, 7.0256, 8.2106),
    ("videoretalking", "lrs2", 25.8770, 0.8430, 0.1451, 0.0026, 7.0523, 7.5366),
    ("dinet", "lrs2", 26.8306, 0.8765, 0.0966, 0.0022, 8.1542, 6.6632),
    ("ip_lap", "lrs2", 27.3878, 0.8798, 0.1106, 0.0020, 9.3604, 4.8714),
    ("g4g", "lrs2", 27.0606, 0.9101, 0.0846, 0.0020, 8.5688, 6.5064),
]

# Table 2 (ablation, HDTF): (method, variant as printed, PSNR, SSIM, LPIPS, MSE, LSE-D, LSE-C)
TABLE2 = [
    ("g4g_wo_alignment", "w/o alignment", 23.7250, 0.8557, 0.1027, 0.0042, 8.0251, 7.0682),
    ("g4g_wo_supervision", "w/o supervision", 27.6478, 0.9160, 0.0783, 0.0019, 7.7244, 7.4636),
    ("g4g_wo_fusion", "w/o fusion", 25.7960, 0.8746, 0.1082, 0.0030, 7.9698, 7.3311),
    ("g4g", "full", 27.5560, 0.9083, 0.0904, 0.0020, 7.8920, 7.3381),
]

# Table 3 (user study: mean opinion score 1-5, 20 raters, 4 videos per dataset):
# (method, visual quality, lip sync, realness)
TABLE3 = [
    ("wav2lip", 2.92, 3.34, 3.51),
    ("videoretalking", 3.14, 3.42, 3.28),
    ("dinet", 2.98, 3.72, 3.37),
    ("ip_lap", 2.33, 3.91, 3.68),
    ("g4g", 3.41, 4.26, 4.34),
]
TABLE3_RATERS = 20

NOTE = "published in arXiv 2402.18122 (the paper's own evaluation)"


def table1_rows() -> list[dict]:
    """Table 1 as rows {dataset, method, source, label, metrics}."""
    return [{"dataset": d, "method": m, "source": "paper", "label": LABELS[m], "metrics": dict(zip(METRICS, v))}
            for m, d, *v in TABLE1]


def table2_rows() -> list[dict]:
    """Table 2 (HDTF) as rows {dataset, method, variant, source, label, metrics}."""
    return [{"dataset": "hdtf", "method": m, "variant": var, "source": "paper", "label": f"G4G {var}",
             "metrics": dict(zip(METRICS, v))} for m, var, *v in TABLE2]
