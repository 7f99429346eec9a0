//! Fuzz target: `Tombstone::decode` on arbitrary bytes. Whatever it accepts
//! must re-encode to the same bytes, and checking it must not panic.

#![no_main]

use kith_caps::Tombstone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Tombstone::decode(data) {
        assert_eq!(v.encode(), data, "accepted a non-canonical encoding");
        let _ = v.verify();
        let _ = v.check_authority(&[], kith_caps::Timestamp::ZERO);
    }
});
