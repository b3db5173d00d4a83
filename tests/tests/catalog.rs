//! The catalog: event types with their fields, handlers with their modules.

use sbox_events::catalog::{self, FieldEntry};
use sbox_events::{Event, EventContext, handler};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.parcel_weighed", source = "scale")]
struct ParcelWeighed {
    parcel: String,
    grams: u32,
    r#type: Option<Vec<String>>,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.pair")]
struct Pair(u8, String);

mod shipping {
    use super::*;

    #[handler(priority = 3)]
    fn label(_: &ParcelWeighed) {}

    #[handler(name = "postage")]
    fn postage(_: &ParcelWeighed, _: &EventContext) {}
}

#[test]
fn events_list_their_fields_and_handlers() {
    let catalog = catalog::catalog();
    let parcel = catalog
        .events
        .iter()
        .find(|e| e.name == "test.parcel_weighed")
        .expect("linked");
    assert_eq!(
        (parcel.source, parcel.rust_type),
        ("scale", "catalog::ParcelWeighed")
    );
    let fields: Vec<(&str, &str)> = parcel
        .fields
        .iter()
        .map(|f: &FieldEntry| (f.name, f.rust_type))
        .collect();
    assert_eq!(
        fields,
        [
            ("parcel", "String"),
            ("grams", "u32"),
            ("type", "Option<Vec<String>>")
        ]
    );
    let handlers: Vec<(&str, i32, &str)> = parcel
        .handlers
        .iter()
        .map(|h| (h.name.as_str(), h.priority, h.module))
        .collect();
    assert_eq!(
        handlers,
        [
            ("catalog::shipping::label", 3, "catalog::shipping"),
            ("postage", 0, "catalog::shipping")
        ]
    );
    assert_eq!(parcel.handlers[1].path, "catalog::shipping::postage");

    let pair = catalog
        .events
        .iter()
        .find(|e| e.name == "test.pair")
        .expect("linked");
    let fields: Vec<(&str, &str)> = pair.fields.iter().map(|f| (f.name, f.rust_type)).collect();
    assert_eq!(fields, [("0", "u8"), ("1", "String")]);

    let names: Vec<&str> = catalog.events.iter().map(|e| e.name).collect();
    for original in [
        "subscription.fetched",
        "config.built",
        "error.occurred",
        "application.stopped",
    ] {
        assert!(names.contains(&original), "{original}");
    }
    assert!(catalog.duplicates.is_empty());
    catalog::check().expect("no duplicates here");
}

#[test]
fn the_catalog_renders_as_text_and_json() {
    let catalog = catalog::catalog();
    let text = catalog.render_text();
    let header = format!(
        "test.parcel_weighed  (source scale, type catalog::ParcelWeighed, schema {})\n    parcel: String\n",
        ParcelWeighed::FINGERPRINT
    );
    assert!(text.contains(&header), "{text}");
    assert!(
        text.contains("  -> postage (priority 0, in catalog::shipping)\n"),
        "{text}"
    );
    let json = serde_json::to_value(&catalog).expect("serializable");
    assert!(
        json["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["name"] == "test.pair")
    );
}

#[test]
fn every_path_the_catalog_prints_for_the_library_is_one_users_can_write() {
    use sbox_events::events::*;
    // Naming each type here is the proof that its path is public.
    let nameable = [
        std::any::type_name::<SubscriptionFetched>(),
        std::any::type_name::<SubscriptionParsed>(),
        std::any::type_name::<SubscriptionValidated>(),
        std::any::type_name::<SubscriptionProcessed>(),
        std::any::type_name::<SubscriptionFailed>(),
        std::any::type_name::<ConfigBuilt>(),
        std::any::type_name::<ConfigExported>(),
        std::any::type_name::<ConfigValidated>(),
        std::any::type_name::<ApplicationStarted>(),
        std::any::type_name::<ApplicationStopped>(),
        std::any::type_name::<ErrorOccurred>(),
    ];
    let printed: Vec<&str> = catalog::catalog()
        .events
        .iter()
        .map(|event| event.rust_type)
        .filter(|path| path.starts_with("sbox_events::"))
        .collect();
    assert_eq!(printed.len(), nameable.len(), "{printed:?}");
    for path in printed {
        assert!(
            path.starts_with("sbox_events::events::") && nameable.contains(&path),
            "the catalog prints `{path}`, which users cannot write"
        );
    }
}

mod v1 {
    use super::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "test.fingerprinted")]
    pub struct Fingerprinted {
        pub id: u32,
        pub note: String,
    }
}

mod renamed_field {
    use super::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "test.fingerprinted_b")]
    pub struct Fingerprinted {
        pub id: u32,
        pub text: String,
    }
}

mod versioned {
    use super::*;

    /// A comment, an attribute and a field order do not count: the
    /// version does.
    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "test.versioned", version = 3)]
    pub struct Versioned {
        #[serde(default)]
        pub id: u64,
    }
}

#[test]
fn fingerprints_follow_the_schema_or_its_declared_version() {
    let fp = v1::Fingerprinted::FINGERPRINT;
    assert_eq!(fp.len(), 16, "{fp}");
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
    // The same fields under another name, or another field name: different.
    assert_ne!(fp, renamed_field::Fingerprinted::FINGERPRINT);
    assert_eq!(versioned::Versioned::FINGERPRINT, "v3");
    let entry = catalog::catalog()
        .events
        .into_iter()
        .find(|e| e.name == "test.versioned")
        .expect("linked");
    assert_eq!(entry.fingerprint, "v3");
    // Stable across builds: a hash of the text, not of addresses.
    assert_eq!(
        sbox_events::events::ErrorOccurred::FINGERPRINT,
        sbox_events::EventType::of::<sbox_events::events::ErrorOccurred>().fingerprint()
    );
}

pub struct Scale;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.parcel_scanned")]
struct ParcelScanned;

mod weighing {
    use super::*;

    #[handler]
    async fn weigh(_: &ParcelScanned, _scale: &super::Scale) {}
}

#[test]
fn the_catalog_shows_async_handlers_and_their_resources() {
    let catalog = catalog::catalog();
    let event = catalog
        .events
        .iter()
        .find(|e| e.name == "test.parcel_scanned")
        .expect("linked");
    let weigh = event
        .handlers
        .iter()
        .find(|h| h.name == "catalog::weighing::weigh")
        .expect("listed");
    assert!(weigh.is_async);
    assert_eq!(weigh.resources, ["catalog::Scale"]);
    let text = catalog.render_text();
    assert!(
        text.contains(
            "  -> catalog::weighing::weigh (async, priority 0, in catalog::weighing) takes &catalog::Scale\n"
        ),
        "{text}"
    );
}
