"""Model understanding, for torch models: what each parameter is (module knowledge, Transformer
roles), what follows each layer (the traced graph) and where the residual branches are. Reads
models; never writes them.
"""
