//! Fuzz target: `Roster::decode` on arbitrary bytes. Whatever it accepts
//! must re-encode to the same bytes, and checking it must not panic.

#![no_main]

use kith_caps::Roster;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Roster::decode(data) {
        assert_eq!(v.encode(), data, "accepted a non-canonical encoding");
        let _ = v.verify();
    }
});
