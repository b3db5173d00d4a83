//! The examples are programs users copy: run their logic here so they cannot
//! rot.

#[test]
fn the_tour_runs_and_behaves_as_it_says() {
    let transcript = sbox_events_examples::tour::run();
    assert!(transcript.ok(), "{:#?}", transcript.lines);
    let text = transcript.lines.join("\n");
    assert!(
        text.contains(
            "error.occurred: latency_guard failed on server.probed: nl-2 answered in 1250 ms"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "after unsubscribing: 1 handler(s): sbox_events_examples::tour::flag_slow_servers"
        ),
        "{text}"
    );
}

#[test]
fn the_async_service_carries_each_trace_id_end_to_end() {
    let transcript = sbox_events_examples::async_service::run().expect("the service runs");
    assert!(transcript.ok(), "{transcript:#?}");
    let text = transcript.lines.join("\n");
    for name in ["nl-servers", "de-servers"] {
        assert!(text.contains(&format!("{name}: stored as r-")), "{text}");
    }
    assert!(
        text.contains("1 async handler(s) skipped (emit_async runs them)"),
        "{text}"
    );
}
