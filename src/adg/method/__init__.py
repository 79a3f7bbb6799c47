"""The method: the paper's math (prompts, pooled hidden states, answer divergence, semantic bins,
bin-wise selection, IFD) and the task types of the analysis."""
