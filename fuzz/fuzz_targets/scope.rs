//! Fuzz target: `Scope::decode` on arbitrary bytes. Whatever it accepts
//! must re-encode to the same bytes, and checking it must not panic.

#![no_main]

use kith_caps::Scope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Scope::decode(data) {
        assert_eq!(v.encode(), data, "accepted a non-canonical encoding");
        let _ = v.topic_id();
    }
});
