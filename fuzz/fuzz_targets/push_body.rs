//! Fuzz target: `kith::proto::push::PushBody::decode` on arbitrary bytes
//! (the signed body of a live-push message). Whatever it accepts must
//! re-encode to the same bytes.

#![no_main]

use kith::proto::push::PushBody;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = PushBody::decode(data) {
        assert_eq!(body.encode(), data, "accepted a non-canonical encoding");
    }
});
