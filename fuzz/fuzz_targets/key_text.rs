//! Fuzz target: `NamespaceKey::import_text` on arbitrary text.

#![no_main]

use kith_caps::NamespaceKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(key) = NamespaceKey::import_text(text)
    {
        let again = NamespaceKey::import_text(&key.export_text());
        assert!(again.is_ok_and(|k| k.id() == key.id()));
    }
});
