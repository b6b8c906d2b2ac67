//! berth-cli (being written).
