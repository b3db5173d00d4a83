//! Every rule the macros enforce, each ending in an error that is spanned at
//! the offending tokens and says what to write instead. Code generation
//! (`expand`) runs only on input that passed all of them: `event` holds the
//! rules of `#[derive(Event)]`, `handler` those of `#[handler]`.

mod event;
mod handler;

pub use event::{event_fields, event_shape};
pub use handler::{no_body, not_a_function, with_body};
