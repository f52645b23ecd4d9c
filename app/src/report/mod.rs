//! What experiments produce: tables (text, CSV, JSON), SVG figures, and the sharded grid of
//! cells they are computed from.

pub mod grid;
pub mod svg;
