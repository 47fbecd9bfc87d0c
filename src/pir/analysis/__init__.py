"""Analysis of the common image-text subspace: joint t-SNE (``tsne``) and cluster statistics (``clusters``)."""

from pir.analysis.clusters import cluster_statistics
from pir.analysis.tsne import joint_tsne

__all__ = ["cluster_statistics", "joint_tsne"]
