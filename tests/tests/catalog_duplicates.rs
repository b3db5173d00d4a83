//! Two event types claiming one name: the explicit check fires, and imports
//! of that name are refused as ambiguous. A binary of its own, since the
//! duplicate is visible to everything linked into it.

use sbox_events::Event;
use sbox_events::catalog;
use sbox_events::history::{ImportOptions, LineErrorKind, import_jsonl};
use serde::{Deserialize, Serialize};

mod billing {
    use super::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "invoice.sent")]
    pub struct InvoiceSent {
        pub id: u64,
    }
}

mod mailing {
    use super::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "invoice.sent")]
    pub struct InvoiceSent {
        pub to: String,
    }
}

#[test]
fn the_duplicate_check_fires_and_imports_are_ambiguous() {
    let err = catalog::check().expect_err("duplicate names");
    assert_eq!(
        err.to_string(),
        "event name \"invoice.sent\" is claimed by 2 types: \
         catalog_duplicates::billing::InvoiceSent, catalog_duplicates::mailing::InvoiceSent; \
         give all but one another #[event(name = \"...\")]"
    );
    assert_eq!(catalog::catalog().duplicates.len(), 1);
    assert!(
        catalog::catalog()
            .render_text()
            .contains("DUPLICATE name \"invoice.sent\"")
    );

    let line = r#"{"name":"invoice.sent","source":"s","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","timestamp":"2026-11-27T06:32:20Z","sequence":1,"data":{"id":1}}"#;
    let err = import_jsonl(line.as_bytes(), &ImportOptions::new()).expect_err("ambiguous");
    assert_eq!(
        *err.errors()[0].kind(),
        LineErrorKind::AmbiguousEvent {
            name: "invoice.sent".into()
        }
    );
    // Both types are still usable directly.
    let _ = (
        billing::InvoiceSent { id: 1 },
        mailing::InvoiceSent { to: "a".into() },
    );
}
