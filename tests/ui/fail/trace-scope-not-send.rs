use sbox_events::trace::{self, TraceId};

fn main() {
    let scope = trace::enter(TraceId::random());
    std::thread::spawn(move || drop(scope));
}
