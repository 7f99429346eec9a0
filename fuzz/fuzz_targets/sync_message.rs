//! Fuzz target: `kith::proto::wire::Message::decode` on arbitrary bytes.
//! Whatever it accepts must re-encode to the same bytes.

#![no_main]

use kith::proto::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        assert_eq!(msg.encode(), data, "accepted a non-canonical encoding");
    }
});
