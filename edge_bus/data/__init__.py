"""BUSI data: indexing, duplicates, splits, THE preprocessing, augmentation, packing, phantoms."""
