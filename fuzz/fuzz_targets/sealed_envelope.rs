//! Fuzz target: `SealedEnvelope::decode` on arbitrary bytes. Whatever it accepts
//! must re-encode to the same bytes, and checking it must not panic.

#![no_main]

use kith_caps::SealedEnvelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = SealedEnvelope::decode(data) {
        assert_eq!(v.encode(), data, "accepted a non-canonical encoding");
        let _ = v.plaintext_len();
    }
});
