"""The refiner: the colour-transfer / super-resolution net after the decoder, in one package.

config (its typed configs, free of Keras for the CLI) -> model (the network and its losses)
-> degrade (training pairs from extracted faces) -> checkpoint (MODEL/refiner/ on the shared
checkpoint format) -> evaluate (held-out crops against bicubic + rct) -> loop
(`intracoder train-refiner`) -> apply (what convert calls). It sits on top of the main
model's training package, whose checkpoint, guard and optimiser helpers it shares, and below
convert.
"""
