"""The foundation every room builds on: errors, option declarations, atomic files, progress, the model guard,
forward hooks and model checks. It imports no other cnnlens package."""
