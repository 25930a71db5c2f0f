"""Parameter and MAC counts, model facts and the Inception 1x1-reduction savings."""
