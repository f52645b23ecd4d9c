//! # sparsegrad-sparse
//!
//! Sparse-coding layers whose gradients are analytic rules registered on the autograd tape
//! (LARS elastic net with Mairal's active-set Jacobian, FISTA convolutional sparse coding,
//! fixed-DCT double sparsity, DCEA, the spatial-contrasting loss).
//!
//! * [`lars`]: the LARS-EN batch solver ([`lars_en`], [`lars_en_gram`]) and Mairal's
//!   active-set Jacobian ([`lars::backward`]).
//! * [`sf`]: the SF and CSF layers' ops and their unsupervised losses, with analytic rules.
//! * [`fista`]: FISTA on a linear operator (dense or convolutional), the SDNet power
//!   iteration for its step; [`csc`]: the CSC layer of SDNet, unrolled on the tape or with the
//!   implicit (conjugate-gradient) backward.
//! * [`dcea`]: the deep convolutional exponential auto-encoder (Gaussian, Binomial, Poisson;
//!   tied and untied; the authors' Poisson denoising configuration) unfolded on the tape with
//!   two fused step rules, and the three negative log-likelihoods as fused rules.
//! * [`dct`]: double sparsity with a fixed DCT dictionary (docs/math.md §3): the overcomplete DCT
//!   atoms over the whole receptive field, the fixed DCT convolution (bias its only parameter),
//!   the effective kernels `Φ·W`, and the paper's shrinkage post-step with zero counts.
//! * [`scl`]: the spatial-contrasting loss (docs/math.md §5), composed from tape ops and as one
//!   fused op with an analytic rule (three GEMMs), squared or plain distance, symmetric or
//!   one-sided.
//! * [`audit`]: the gradient audit of every rule here, appended to the built-in ops' registry
//!   by `sparsegrad gradcheck`.

pub mod audit;
pub mod csc;
pub mod dcea;
pub mod dct;
pub mod error;
pub mod fista;
pub mod lars;
pub mod scl;
pub mod sf;

pub use error::SparseError;
pub use lars::{lars_en, lars_en_gram, LarsConfig, LarsSolution, SamplePath};
