//! A downstream's SSE stream, fed in chunks cut where the input says: the events must be the
//! same however the stream is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus::mcp::sse::Parser;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut whole = Parser::default();
    let expected = whole.feed(stream);
    let mut chunked = Parser::default();
    let size = usize::from(cut).max(1);
    let events: Vec<_> = stream
        .chunks(size)
        .flat_map(|chunk| chunked.feed(chunk))
        .collect();
    assert_eq!(events, expected, "chunks of {size} bytes");
});
