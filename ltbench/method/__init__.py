"""The paper's method (Elberg, Parra, Petrache, CVPR-W 2024): iterated learning of a sparse
latent space, class-activation masks (GradCAM++ by default, EigenCAM as the paper), tail/head fusion,
decoding and refinement."""
