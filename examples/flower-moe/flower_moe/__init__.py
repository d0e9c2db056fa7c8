"""flower-moe: a federated Mixture-of-Experts app whose experts are assigned by fedalign."""
