//! # sparsegrad-sparse
//!
//! Sparse-coding layers whose gradients are analytic rules registered on the autograd tape
//! (LARS elastic net with Mairal's active-set Jacobian, FISTA convolutional sparse coding,
//! fixed-DCT double sparsity, DCEA, the spatial-contrasting loss). Filled in by later issues.
