//! A TCP stream cut into reads at fuzzer-chosen points: the decoder must not panic,
//! frames must respect the limit, and the buffer must stay bounded.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use syslog_svc::framing::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&params, stream)) = data.split_first() else { return };
    let max = 1 + usize::from(params & 0x3f) * 8;
    let chunk = 1 + usize::from(params >> 6) * 37;
    let mut dec = Decoder::new(max);
    let mut buf = BytesMut::new();
    for c in stream.chunks(chunk) {
        buf.extend_from_slice(c);
        while let Some(f) = dec.decode(&mut buf) {
            assert!(f.data.len() <= max);
        }
        assert!(buf.len() <= dec.buffer_limit() + chunk);
    }
    if let Some(f) = dec.finish(&mut buf) {
        assert!(f.data.len() <= max + 10);
    }
});
