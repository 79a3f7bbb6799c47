"""KFP components, one module per stage; each body only calls into the `adg` library.

Modules here import only the standard library and kfp at top level, so compiling the pipeline never
needs torch, transformers or vLLM; the `adg` imports happen inside the component bodies, in the
stage's container (or the local process under kfp.local).
"""
