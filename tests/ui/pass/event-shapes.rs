use sbox_events::{Event, EventBus};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop.order_placed", source = "checkout")]
pub struct OrderPlaced {
    pub id: u64,
    pub items: Vec<String>,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop.tuple")]
struct Tuple(u8, String);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop.unit")]
struct Unit;

// Attributes may be split; other attributes may sit between them.
#[derive(Event, Serialize, Deserialize, Debug, Clone)]
#[event(name = "shop.v2.refund_issued")]
#[serde(rename_all = "camelCase")]
#[event(source = "payments")]
struct RefundIssued {
    order_id: u64,
}

// Types of your own may share a name with `std`'s `Cell`, `RefCell` and
// `Rc`: written with their path, they are fields like any other.
mod sheet {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Cell(pub u32);

    #[derive(Serialize, Deserialize)]
    pub struct RefCell(pub String);

    pub mod rc {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Rc(pub u8);
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "sheet.edited")]
struct SheetEdited {
    cell: sheet::Cell,
    cells: Vec<crate::sheet::RefCell>,
    owner: sheet::rc::Rc,
    // Behind a lock, `Cell` is shared safely.
    locked: std::sync::Mutex<std::cell::Cell<u32>>,
    shared_locked: std::sync::Arc<std::sync::Mutex<Vec<std::cell::RefCell<u32>>>>,
}

fn main() {
    // Events can be declared inside a function, too.
    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "local.thing_happened")]
    struct Local;

    assert_eq!(RefundIssued::SOURCE, "payments");
    let bus = EventBus::new();
    bus.emit(OrderPlaced { id: 1, items: vec![] });
    bus.emit(Tuple(1, String::new()));
    bus.emit(Unit);
    bus.emit(RefundIssued { order_id: 1 });
    bus.emit(Local);
    bus.emit(SheetEdited {
        cell: sheet::Cell(1),
        cells: vec![sheet::RefCell("A1".into())],
        owner: sheet::rc::Rc(0),
        locked: std::sync::Mutex::new(std::cell::Cell::new(0)),
        shared_locked: std::sync::Arc::new(std::sync::Mutex::new(vec![std::cell::RefCell::new(0)])),
    });
}
