//! What `#[derive(Event)]` emits next to an error, so that one mistake gives
//! one error: a minimal `impl Event` (and its registration), without which
//! every `emit`, subscription and `#[handler]` naming the struct would add an
//! error of its own ("`X` is not an event").
//!
//! Not emitted when the struct cannot implement the trait at all (generic,
//! a union, or fields that can never be shared across threads): the impl
//! would only repeat the error.

use crate::valid;
use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput};

pub fn expand(node: &DeriveInput, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    let impossible = !node.generics.params.is_empty()
        || matches!(node.data, Data::Union(_))
        || valid::event_fields(node).is_err();
    if impossible {
        return error;
    }
    let ident = &node.ident;
    quote! {
        #error

        const _: () = {
            ::sbox_events::__private::register_event!(#ident, "invalid.event");

            #[diagnostic::do_not_recommend]
            impl ::sbox_events::Event for #ident {
                const NAME: &'static str = "invalid.event";
                const SOURCE: &'static str = "invalid";
                const FINGERPRINT: &'static str = "invalid";
                const __FIELDS: &'static [(&'static str, &'static str)] = &[];
                type __Registry = __SboxEventsRegistry;
                fn __slot() -> &'static ::sbox_events::__private::EventSlot<Self> {
                    &__SBOX_EVENTS_SLOT
                }
            }
        };
    }
}
