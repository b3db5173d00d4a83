//! Code generation, for input that passed every rule in `valid`. Generated
//! code names everything by absolute path (`::core`, `::sbox_events`) so
//! user items cannot shadow it; what users must not touch lives under
//! `::sbox_events::__private`. The derive emits one `impl Event` and one
//! call of the runtime crate's registration macro; everything else it needs
//! is defined there.

use crate::ast::{EventInput, HandlerInput};
use crate::attr::push;
use crate::{fallback, valid};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, ReturnType};

/// `#[derive(Event)]`: parse, validate, expand; on any error, the errors
/// and a fallback impl.
pub fn derive(node: &DeriveInput) -> TokenStream {
    let (input, mut errors) = EventInput::from_syn(node);
    if let Some(Err(err)) = input.as_ref().map(EventInput::validate) {
        push(&mut errors, err);
    }
    // The shape and the fields are checked on the raw input, so their
    // errors come with those of the attributes.
    for rule in [valid::event_shape, valid::event_fields] {
        if let Err(err) = rule(node) {
            push(&mut errors, err);
        }
    }
    match (errors, input) {
        (None, Some(input)) => impl_event(&input),
        (Some(err), _) => fallback::expand(node, err),
        // Without a name there is always an error.
        (None, None) => TokenStream::new(),
    }
}

fn impl_event(input: &EventInput<'_>) -> TokenStream {
    let ident = input.ident;
    let name = &input.name;
    let source = match &input.source {
        Some(source) => quote!(#source),
        None => quote!(::core::env!("CARGO_PKG_NAME")),
    };
    let fields = input.fields.iter().map(|field| {
        let name = &field.name;
        let ty = field.type_text();
        quote!((#name, #ty))
    });
    let fingerprint = input.fingerprint();
    // Spanned at the path: a wrong signature is reported there.
    let validate = input.validate.as_ref().map(|path| {
        quote_spanned! {path.span()=>
            fn validate(&self) -> ::core::result::Result<(), ::std::string::String> {
                #path(self).map_err(|err| ::std::string::ToString::to_string(&err))
            }
        }
    });
    // Spanned at the type's name: when the struct lacks `Serialize`, `Send`...
    // the bound error points at the struct, not at the derive.
    // `do_not_recommend`: "`X` is not an event" lists no unrelated events.
    let event_impl = quote_spanned! {ident.span()=>
        #[diagnostic::do_not_recommend]
        impl ::sbox_events::Event for #ident {
            const NAME: &'static str = #name;
            const SOURCE: &'static str = #source;
            const FINGERPRINT: &'static str = #fingerprint;
            const __FIELDS: &'static [(&'static str, &'static str)] = &[#(#fields),*];
            type __Registry = __SboxEventsRegistry;
            #validate
            #[inline]
            fn __slot() -> &'static ::sbox_events::__private::EventSlot<Self> {
                &__SBOX_EVENTS_SLOT
            }
        }
    };
    quote! {
        const _: () = {
            ::sbox_events::__private::register_event!(#ident, #name);

            #event_impl
        };
    }
}

/// `#[handler]`: the function, unchanged, and its link-time registration.
pub fn handler(input: &HandlerInput<'_>) -> syn::Result<TokenStream> {
    let sig = input.validate()?;
    let func = input.func;
    let fn_ident = &func.sig.ident;
    // `fn r#async` is named `module::async`, as its fields are (`unraw`).
    let fn_name = syn::ext::IdentExt::unraw(fn_ident).to_string();
    let event = sig.event;

    let path = quote!(::core::concat!(::core::module_path!(), "::", #fn_name));
    let name = match &input.name {
        Some(name) => quote!(#name),
        None => path.clone(),
    };
    let priority = input.priority;

    // Each piece is spanned at the user's tokens it depends on, so type errors
    // point at the parameter or return type that is wrong.
    // The wrapper's own names all start with `__sbox_events_`: a handler
    // named `event`, `ctx` or `result` is not shadowed by them.
    let mut args = vec![quote!(__sbox_events_event)];
    if let Some(ctx_ty) = sig.context {
        args.push(quote_spanned!(ctx_ty.span()=> __sbox_events_ctx));
    }
    // Each resource is read from the bus by an index resolved once (a
    // static per parameter), never by hashing; a missing one makes the
    // call a skip the bus reports.
    // An async wrapper reads with `get` (which resolves the slot's index on
    // first use); a sync one with `get_resolved`, and on a miss returns
    // through `retry` (out of line: it resolves the index and calls the
    // wrapper again, or fails), so its fast path calls nothing but the
    // handler and saves no registers.
    let mut fetches = Vec::new();
    let mut needs = Vec::new();
    let mut bounds = Vec::new();
    for (i, ty) in sig.resources.iter().enumerate() {
        let slot = quote::format_ident!("__SBOX_EVENTS_RESOURCE_{}", i);
        let var = quote::format_ident!("__sbox_events_resource_{}", i);
        let (get, missing) = match sig.is_async {
            true => (
                quote!(get),
                quote! {
                    return ::sbox_events::__private::failed_future(
                        ::sbox_events::__private::missing_resource::<#ty>(),
                    )
                },
            ),
            false => (
                quote!(get_resolved),
                quote! {
                    return #slot.retry(
                        __sbox_events_event,
                        __sbox_events_ctx,
                        __sbox_events_failed,
                        __sbox_events_handler,
                    )
                },
            ),
        };
        fetches.push(quote! {
            static #slot: ::sbox_events::__private::ResourceSlot<#ty> =
                ::sbox_events::__private::ResourceSlot::new();
            let #var: &#ty = match #slot.#get(__sbox_events_ctx) {
                ::core::option::Option::Some(__sbox_events_found) => __sbox_events_found,
                ::core::option::Option::None => {
                    #missing;
                }
            };
        });
        args.push(quote!(#var));
        needs.push(quote!(::sbox_events::__private::ResourceNeed::of::<#ty>()));
        // Spanned at the parameter's type: "cannot be a resource" points
        // at it.
        bounds.push(quote_spanned! {ty.span()=>
            let _ = __sbox_events_resource_is_shareable::<#ty>;
        });
    }
    let call = quote!(#fn_ident(#(#args),*));
    // The result gets the return type's span, so "cannot be returned by an
    // event handler" points at the return type.
    let result = match &func.sig.output {
        ReturnType::Default => quote!(__sbox_events_result),
        ReturnType::Type(_, ty) => quote_spanned!(ty.span()=> __sbox_events_result),
    };
    let (constructor, wrapper) = if sig.is_async {
        // The boxed future must be `Send`: the coercion is spanned at the
        // function's name, so "future cannot be sent between threads
        // safely" points at the handler (and its notes at the `.await`
        // that holds the non-`Send` value).
        let boxed = quote_spanned! {fn_ident.span()=>
            ::std::boxed::Box::pin(async move {
                let #result = #call.await;
                ::sbox_events::IntoHandlerResult::into_handler_result(#result)
            })
        };
        let wrapper = quote! {
            // A handler that returns `!` makes the code after its call
            // unreachable: not the user's to fix.
            #[allow(unreachable_code)]
            fn __sbox_events_handler<'a>(
                __sbox_events_event: &'a #event,
                __sbox_events_ctx: &'a ::sbox_events::EventContext<'_>,
            ) -> ::sbox_events::__private::HandlerFuture<'a> {
                let _ = __sbox_events_ctx;
                #(#fetches)*
                #boxed
            }
        };
        (quote!(new_async), wrapper)
    } else {
        // A handler that returns `()` leaves nothing to do after its call
        // (`settle` of `Ok(())` inlines to nothing): the call becomes a
        // jump, and the handler returns straight to the dispatch loop.
        let wrapper = quote! {
            #[allow(unreachable_code)] // as for the async wrapper
            fn __sbox_events_handler(
                __sbox_events_event: &#event,
                __sbox_events_ctx: &::sbox_events::EventContext<'_>,
                __sbox_events_failed: &mut ::core::option::Option<::sbox_events::HandlerError>,
            ) {
                let _ = __sbox_events_ctx;
                #(#fetches)*
                let #result = #call;
                ::sbox_events::__private::settle(
                    ::sbox_events::IntoHandlerResult::into_handler_result(#result),
                    __sbox_events_failed,
                )
            }
        };
        (quote!(new), wrapper)
    };
    let resource_check = (!bounds.is_empty()).then(|| {
        quote! {
            fn __sbox_events_resource_is_shareable<
                T: ?::core::marker::Sized + ::sbox_events::__private::Resource,
            >() {
            }
            const _: () = {
                #(#bounds)*
            };
        }
    });
    // Each name spanned at its type: "`X` is not an event" points there.
    let emits = input.emits.as_ref().map(|types| {
        let names = types.iter().map(|ty| {
            quote_spanned! {ty.span()=> <#ty as ::sbox_events::Event>::NAME}
        });
        quote!(.with_emits(&[#(#names),*]))
    });
    let record = quote! {
        ::sbox_events::__private::HandlerRecord::#constructor(
            #name,
            #path,
            #priority,
            __sbox_events_handler,
        )
        .with_resources(&[#(#needs),*])
        #emits
    };
    // Spanned at the event type: "`X` is not an event" points there, and
    // its note names this function ("required by a bound in
    // `handler_parameter_is_an_event`"), not a path inside sbox_events.
    let submit = quote_spanned! {event.span()=>
        const fn handler_parameter_is_an_event<E: ::sbox_events::Event>(
            __sbox_events_record: ::sbox_events::__private::HandlerRecord<E>,
        ) -> <E as ::sbox_events::Event>::__Registry {
            ::sbox_events::__private::registration(__sbox_events_record)
        }
        ::sbox_events::__private::inventory::submit! {
            handler_parameter_is_an_event::<#event>(#record)
        }
    };

    Ok(quote! {
        #func

        const _: () = {
            #wrapper

            #resource_check

            #submit
        };
    })
}
