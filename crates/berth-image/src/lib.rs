//! berth-image (being written).
