"""export: Google-format BERT checkpoints to TF1 Hub format modules."""
