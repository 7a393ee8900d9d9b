"""Retrieval with a trained model: a persistent nearest-neighbour index
(`Index`: exact, HNSW or IVF-PQ on faiss) and `Searcher`, which embeds
images with a SavedModel or Keras model and looks them up in an index."""

from metrix_tf.retrieval.index import Index
from metrix_tf.retrieval.searcher import Searcher
