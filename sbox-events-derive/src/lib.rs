//! Procedural macros for [`sbox-events`](https://docs.rs/sbox-events).
//!
//! Do not depend on this crate directly: `sbox-events` re-exports both macros
//! (`sbox_events::Event` and `sbox_events::handler`) and documents them there,
//! and the code they generate refers to `::sbox_events`.
//!
//! Layout, after dtolnay's thiserror: `ast` is a typed view of the input
//! (through `attr`, which parses the attributes' syntax), `valid` holds every
//! rule with its error message, `expand` generates code for valid input, and
//! `fallback` what is emitted next to an error so that one mistake gives one
//! error. This file is only the entry points.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;
mod written;

use proc_macro::TokenStream;

/// Derives `sbox_events::Event` for a struct; see the `sbox-events` docs.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}

/// Registers a free function as a link-time event handler; see the
/// `sbox-events` docs.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    let item2: proc_macro2::TokenStream = item.clone().into();
    // Every error comes out together: the attribute's (one per mistake) and
    // the signature's. The function is kept, so that the user sees only
    // these, not a cascade of "cannot find function" at its call sites.
    let (args, mut errors) = attr::parse_handler_args(args.into());
    let (func, item2) = match syn::parse::<syn::ItemFn>(item.clone()) {
        Ok(func) => (func, item2),
        // A declaration without a body: said once, and the function is kept
        // with a body, so that the compiler does not say it again. Its
        // signature is still checked.
        Err(err) => {
            if let Ok(declared) = syn::parse::<syn::ForeignItemFn>(item.clone()) {
                attr::push(&mut errors, valid::no_body(&declared));
                let func = valid::with_body(declared);
                let tokens = quote::ToTokens::to_token_stream(&func);
                (func, tokens)
            } else {
                let err = match syn::parse::<syn::Item>(item) {
                    Ok(other) => valid::not_a_function(&other),
                    // Not an item syn understands: its own error says where.
                    Err(_) => err,
                };
                attr::push(&mut errors, err);
                return with_errors(errors, item2);
            }
        }
    };
    // A variadic function is kept without its `...`: the compiler's own
    // errors about it would repeat ours.
    let item2 = if func.sig.variadic.is_some()
        && let Ok(mut copy) = syn::parse2::<syn::ItemFn>(item2.clone())
    {
        copy.sig.variadic = None;
        quote::ToTokens::into_token_stream(copy)
    } else {
        item2
    };
    match expand::handler(&ast::HandlerInput::new(args, &func)) {
        Ok(tokens) if errors.is_none() => tokens.into(),
        Ok(_) => with_errors(errors, item2),
        Err(err) => {
            attr::push(&mut errors, err);
            with_errors(errors, item2)
        }
    }
}

fn with_errors(errors: Option<syn::Error>, item: proc_macro2::TokenStream) -> TokenStream {
    let mut tokens = errors
        .map(syn::Error::into_compile_error)
        .unwrap_or_default();
    tokens.extend(item);
    tokens.into()
}
