"""Retrieval evaluation: exact cosine k-NN (faiss, chunked), Recall@K,
Precision@1, R-precision, MAP@R and utilization."""

from metrix_tf.evaluation.nearest_neighbors import knn
from metrix_tf.evaluation.nearest_neighbors import l2_normalize
from metrix_tf.evaluation.retrieval_metrics import evaluate_retrieval
from metrix_tf.evaluation.retrieval_metrics import map_at_r
from metrix_tf.evaluation.retrieval_metrics import precision_at_1
from metrix_tf.evaluation.retrieval_metrics import r_precision
from metrix_tf.evaluation.retrieval_metrics import recall_at_k
from metrix_tf.evaluation.utilization import embedding_mixes
from metrix_tf.evaluation.utilization import utilization
