//! Fuzz target: `Receipt::decode` on arbitrary bytes. Whatever it accepts
//! must re-encode to the same bytes, and checking it must not panic.

#![no_main]

use kith_caps::Receipt;
use libfuzzer_sys::fuzz_target;

/// A fixed device cert to check decoded receipts against.
fn fixed_cert() -> kith_caps::DeviceCert {
    let key = kith_caps::NamespaceKey::from_bytes([0x22; 32]);
    let device = kith_caps::DeviceKey::from_bytes([0x44; 32]).id();
    match kith_caps::DeviceCert::issue(
        &key,
        device,
        kith_caps::Rights::NONE,
        kith_caps::Timestamp::ZERO,
        None,
    ) {
        Ok(cert) => cert,
        Err(e) => panic!("fixed cert: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Receipt::decode(data) {
        assert_eq!(v.encode(), data, "accepted a non-canonical encoding");
        let _ = v.verify(&fixed_cert());
    }
});
