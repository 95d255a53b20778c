//! The policy reader: any text loads or gives an error naming a line; it never panics,
//! whichever way (in parts or whole) the reader takes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut p = keyward::secrets::Policies::default();
        let _ = p.add_text(std::path::Path::new("fuzz.toml"), text);
    }
});
