//! berth-runtime (being written).
