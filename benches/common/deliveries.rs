//! The deliveries and pipeline the `pipeline` and `allocations` benches share
//! (included by those two only: they need the `tokio` feature).

use hookgate::{
    handler_fn, HandlerError, MemoryStore, Pipeline, PipelineBuilder, Registry, Verifier,
};

/// The sizes both benches measure at.
pub const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (16 * 1024, "16KiB")];

/// Width of the event counter written into Stripe ids, so bodies keep their size.
pub const ID_DIGITS: usize = 12;

/// A JSON body of exactly `len` bytes whose id is `evt_` + `ID_DIGITS` digits.
pub fn body(len: usize, n: u64) -> Vec<u8> {
    let mut body = format!(
        r#"{{"id":"evt_{n:0width$}","object":"event","type":"invoice.paid","action":"opened","data":{{"pad":""#,
        width = ID_DIGITS
    )
    .into_bytes();
    body.resize(len - 3, b'x');
    body.extend_from_slice(b"\"}}");
    body
}

/// A pipeline builder with `verifier`, a `MemoryStore` and one no-op critical
/// handler for every event.
pub fn builder(verifier: impl Verifier + 'static) -> PipelineBuilder {
    let mut registry = Registry::new();
    registry.critical(
        "*",
        "*",
        "noop",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    Pipeline::builder()
        .verifier(verifier)
        .store(MemoryStore::new())
        .registry(registry)
}
