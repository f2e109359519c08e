"""The protocol-free session core: one recognition call from audio in to ordered results out."""
