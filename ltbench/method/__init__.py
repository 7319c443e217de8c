"""The paper's method (Elberg, Parra, Petrache, CVPR-W 2024): iterated learning of a sparse
latent space, EigenCAM masks, tail/head fusion, decoding and refinement."""
