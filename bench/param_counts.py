"""Parameter counts of the frame-level models at the WILLOW configurations.

The flags are those of the training command lines in WILLOW's README (4716
classes, rgb+audio frames, MoE with 2 mixtures). Each model is built with
its weights' shapes only (no 1.3 GB of initial values for the largest) and
counted.

Usage: python bench/param_counts.py [--markdown]
"""

from __future__ import annotations

import argparse

from youtube8m_willow.config import ModelConfig
from youtube8m_willow.models.frame_level import parameter_count

FRAME_INPUT = dict(frame_features=True, feature_names=("rgb", "audio"),
                   feature_sizes=(1024, 128), num_classes=4716, iterations=300,
                   frame_sampling="uniform")

PAPER_CONFIGS = {
    "Gated NetVLAD (256 clusters)": dict(
        model="NetVLADModelLF", netvlad_cluster_size=256, netvlad_hidden_size=1024,
        moe_l2=1e-6, netvlad_relu=False, gating=True, moe_prob_gating=True),
    "Gated NetFV (128 clusters)": dict(
        model="NetFVModelLF", fv_cluster_size=128, fv_hidden_size=1024, moe_l2=1e-6,
        fv_relu=False, gating=True, moe_prob_gating=True, fv_couple_weights=False),
    "Gated Soft-DBoF (4096 clusters)": dict(
        model="GatedDbofModelLF", dbof_cluster_size=4096, dbof_hidden_size=1024,
        moe_l2=1e-6, dbof_relu=False),
    "Soft-DBoF (8000 clusters)": dict(
        model="SoftDbofModelLF", dbof_cluster_size=8000, dbof_hidden_size=1024,
        dbof_relu=False),
    "Gated NetRVLAD (256 clusters)": dict(
        model="NetVLADModelLF", netvlad_cluster_size=256, netvlad_hidden_size=1024,
        moe_l2=1e-6, netvlad_relu=False, gating=True, moe_prob_gating=True, lightvlad=True),
}


def count_all() -> list[tuple[str, str, int, int]]:
    """(label, model, trainable, total) for each paper configuration."""
    rows = []
    for label, flags in PAPER_CONFIGS.items():
        config = ModelConfig(**FRAME_INPUT, **flags)
        counts = parameter_count(config)
        rows.append((label, config.model, counts["trainable"], counts["total"]))
    return rows


def format_table(rows, markdown: bool) -> str:
    header = ("configuration", "model", "trainable", "total")
    lines = []
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|---|---|---:|---:|")
        lines += [f"| {label} | {model} | {trainable / 1e6:.1f}M | {total / 1e6:.1f}M |"
                  for label, model, trainable, total in rows]
    else:
        lines.append(f"{header[0]:34s} {header[1]:18s} {header[2]:>14s} {header[3]:>14s}")
        lines += [f"{label:34s} {model:18s} {trainable:14,d} {total:14,d}"
                  for label, model, trainable, total in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    print(format_table(count_all(), args.markdown))


if __name__ == "__main__":
    main()
