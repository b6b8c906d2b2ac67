//! `berth compose`: a Compose Specification project loaded into a typed model (`load`, `model`)
//! and brought to its declared state through the Engine API.

pub mod load;
pub mod model;
