//! # sparsegrad-models
//!
//! Layers, networks, the training loop and the `sparsegrad` program.
