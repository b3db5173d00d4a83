//! Generates the scale scenarios: an event with 100 and one with 1,000
//! `#[handler]`s, 1,000 event types with one handler each, and 1,000
//! distinct evenio handlers (evenio keeps one handler per Rust type).

use std::fmt::Write;

fn main() {
    let mut code = String::new();
    for (event, count) in [("Hundred", 100), ("Thousand", 1000)] {
        let name = event.to_lowercase();
        writeln!(
            code,
            "#[derive(Event, Serialize, Deserialize)]\n#[event(name = \"peer.{name}\")]\npub struct {event}(pub u64);"
        )
        .unwrap();
        for i in 0..count {
            writeln!(
                code,
                "#[handler]\nfn {name}_{i}(e: &{event}) {{ sink(e.0); }}"
            )
            .unwrap();
        }
    }
    for i in 0..1000 {
        writeln!(
            code,
            "#[derive(Event, Serialize, Deserialize)]\n#[event(name = \"peer.type_{i}\")]\npub struct Type{i}(pub u64);\n#[handler]\nfn type_{i}(e: &Type{i}) {{ sink(e.0); }}"
        )
        .unwrap();
    }
    for i in 0..1000 {
        writeln!(
            code,
            "fn evenio_{i}(r: evenio::prelude::Receiver<EvenioEvent>) {{ sink(r.event.0); }}"
        )
        .unwrap();
    }
    code.push_str(
        "pub fn add_many_evenio_handlers(world: &mut evenio::prelude::World, count: usize) {\n",
    );
    code.push_str("    let all: [fn(&mut evenio::prelude::World); 1000] = [\n");
    for i in 0..1000 {
        writeln!(code, "        |w| {{ w.add_handler(evenio_{i}); }},").unwrap();
    }
    code.push_str("    ];\n    for add in &all[..count] {\n        add(world);\n    }\n}\n");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("generated.rs");
    std::fs::write(out, code).unwrap();
}
