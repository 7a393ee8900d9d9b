"""Export of the embedding network as a SavedModel for serving."""

from metrix_tf.export.saved_model import export_saved_model
from metrix_tf.export.saved_model import load_serving_function
