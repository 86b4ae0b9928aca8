"""The learned sub-grid correction: fine (2x) accuracy from a coarse solve and the fine arrays folded into channels.

``fold``      space-to-depth / depth-to-space between a fine grid and the training grid
``inputs``    the model's inputs of one fine sample: the coarse start (the sample restricted to the training grid,
              solved, prolonged) and the fine conductivity and source, folded
``model``     the corrector network (a 3D UNet on the training grid)
``predict``   one fine sample -> its potential (the path eval_sr times and ``fieldlab predict`` runs)
``train``     the training loop on the fine labels (train_2x/, val_2x/)
"""
