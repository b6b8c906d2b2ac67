//! berth-api (being written).
