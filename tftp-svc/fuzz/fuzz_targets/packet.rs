//! Any datagram: decoding must not panic, and a decoded request must negotiate without
//! panicking either (the listener does both with bytes from the network).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tftp_svc::options::{Limits, negotiate};
use tftp_svc::packet::{Packet, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(Packet::Rrq(r) | Packet::Wrq(r)) = decode(data) {
        let _ = r.is_octet();
        let n = negotiate(&r, 850_528, &Limits { max_blksize: 1468, max_windowsize: 16 });
        assert!(n.blksize >= 8 && n.blksize <= 1468);
        assert!(n.windowsize >= 1 && n.windowsize <= 16);
    }
});
