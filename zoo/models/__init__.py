"""Model families, one module each, discovered by :func:`zoo.registry.discover`:
importing a family module registers its models, so a new family is one file
(plus its manifest entries and its parity test)."""
