//! Fuzz target: `SignedPush::decode` on arbitrary bytes (a live-push
//! message once opened from its sealed envelope). Whatever it accepts must
//! re-encode to the same bytes, and checking it must not panic.

#![no_main]

use kith_caps::SignedPush;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = SignedPush::decode(data) {
        assert_eq!(v.encode(), data, "accepted a non-canonical encoding");
        let _ = v.verify();
    }
});
