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
