//! berth-daemon (being written).
