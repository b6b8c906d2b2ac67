//! berth-shim (being written).
