//! Prints the link-time catalog of this program: `cargo run --example
//! catalog [-- --json]`. Exits with status 1 if two event types share a name.

use std::process::ExitCode;

// Nothing here calls into the examples library, so without this line the
// linker would drop it, and its events and `#[handler]`s with it.
sbox_events::link!(sbox_events_examples);

fn main() -> ExitCode {
    let json = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--json") => true,
        Some(other) => {
            eprintln!("unknown argument {other:?}\nusage: catalog [--json]");
            return ExitCode::from(2);
        }
    };
    let catalog = sbox_events::catalog::catalog();
    if json {
        match serde_json::to_string_pretty(&catalog) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("catalog: cannot render JSON: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", catalog.render_text());
    }
    match sbox_events::catalog::check() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("catalog: {err}");
            ExitCode::FAILURE
        }
    }
}
