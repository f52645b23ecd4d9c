//! # sparsegrad-datasets
//!
//! Memory-mapped, validated readers for MNIST-format IDX files, CIFAR binaries and SVHN MAT
//! files, and a batch loader. (Issue 3 fills this crate.)
