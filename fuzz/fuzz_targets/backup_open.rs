//! The whole decryption path (armor detection, header, stanzas, MAC, STREAM) on
//! arbitrary input with a fixed identity: errors, never panics or hangs.
#![no_main]

use libfuzzer_sys::fuzz_target;

const IDENTITY: &str = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

fuzz_target!(|data: &[u8]| {
    let ids = keyward::backup::keys::parse_identities(IDENTITY, "fuzz").expect("valid identity");
    let opts = keyward::backup::DecryptOptions { identities: ids, ..Default::default() };
    let mut out = Vec::new();
    let _ = keyward::backup::decrypt_stream(
        Box::new(std::io::Cursor::new(data.to_vec())),
        &mut out,
        &opts,
        None,
    );
});
