"""Identity embeddings (dlib's face-recognition ResNet and its 5-point aligner): a shared
piece below the pipeline, used by extract's --reference filter and by the metrics."""
