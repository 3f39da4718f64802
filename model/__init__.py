"""AuxFormer: the network (auxformer.py), its transformer blocks (attention.py), the reference-checkpoint converter."""
