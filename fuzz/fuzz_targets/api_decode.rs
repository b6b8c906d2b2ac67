//! Engine API request bodies decoded with serde_json from arbitrary bytes, as the daemon
//! decodes them; what decodes must encode and decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&v).expect("encode what was decoded");
        serde_json::from_slice::<T>(&again).expect("decode what was encoded");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<berth_api::container::CreateRequest>(data);
    round_trip::<berth_api::container::UpdateRequest>(data);
    round_trip::<berth_api::network::CreateRequest>(data);
    round_trip::<berth_api::network::ConnectRequest>(data);
    round_trip::<berth_api::network::DisconnectRequest>(data);
    round_trip::<berth_api::volume::CreateOptions>(data);
    round_trip::<berth_api::exec::ExecConfig>(data);
    round_trip::<berth_api::exec::ExecStart>(data);
    round_trip::<berth_distribution::AuthConfig>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = berth_api::detach::parse(s);
        let _ = berth_api::units::ram_in_bytes(s);
    }
});
