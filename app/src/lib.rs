//! # sparsegrad (the program)
//!
//! The `sparsegrad` command-line program on top of the library crates: its commands
//! ([`commands`]) and their argument parsing. The library crates (`engine`, `autograd`,
//! `sparse`, `models`, `datasets`) keep their short dependency list; this crate is the
//! application and may use the ecosystem's crates where they do the job better.

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod experiments;
pub mod report;
