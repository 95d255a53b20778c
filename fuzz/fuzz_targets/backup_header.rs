//! The backup header parser: never panics, and whatever parses re-encodes to the same
//! bytes (so the MAC covers exactly what was parsed).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keyward::backup::header::check_round_trip(data);
});
