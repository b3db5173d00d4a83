//! Prints the link-time catalog of this program: `cargo run --example
//! catalog [-- --json | --mermaid | --dot]`: as text, JSON, or a graph of
//! which handler reacts to which event and emits which (Mermaid renders on
//! GitHub; DOT goes to Graphviz: `... -- --dot | dot -Tsvg > catalog.svg`).
//! Exits with status 1 if two event types share a name, 2 on a bad argument.

use std::process::ExitCode;

// Nothing here calls into the examples library, so without this line the
// linker would drop it, and its events and `#[handler]`s with it.
sbox_events::link!(sbox_events_examples);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let format = match args.as_slice() {
        [] => "text",
        [flag] if ["--json", "--mermaid", "--dot"].contains(&flag.as_str()) => &flag[2..],
        _ => {
            let shown: Vec<String> = args.iter().map(|a| format!("{:?}", a)).collect();
            eprintln!(
                "unexpected arguments {}\nusage: catalog [--json | --mermaid | --dot]",
                shown.join(" ")
            );
            return ExitCode::from(2);
        }
    };
    let catalog = sbox_events::catalog::catalog();
    match format {
        "json" => match serde_json::to_string_pretty(&catalog) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("catalog: cannot render JSON: {err}");
                return ExitCode::FAILURE;
            }
        },
        "mermaid" => print!("{}", catalog.to_mermaid()),
        "dot" => print!("{}", catalog.to_dot()),
        _ => print!("{}", catalog.render_text()),
    }
    match sbox_events::catalog::check() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("catalog: {err}");
            ExitCode::FAILURE
        }
    }
}
